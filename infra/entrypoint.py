"""The container image's one entry point: the command chooses the service.

``python -m infra.entrypoint COMMAND [ARGS]`` (the image's ENTRYPOINT), where COMMAND is

* ``ingest`` — the ingest API (``python -m ingest``);
* ``api`` — the read API (``python -m api``);
* ``processors NAME [--web-port N]`` — one processor worker (``python -m processors``),
  NAME from the registry ``processors.__main__.PROCESSORS``;
* ``migrate`` — create the database if missing and apply every migration;
* ``create-topics`` — create the missing topics with the configured partitions and
  replication (compose; on Kubernetes the Strimzi ``KafkaTopic`` resources do it);
* ``init`` — ``migrate`` then ``create-topics``: the one-shot job before the services.

Every setting comes from ``LEARNSTREAM_*`` (learnstream.settings), nothing from here.
The deployment artefacts under ``infra/compose`` and ``infra/k8s`` may only run the
commands of :data:`COMMANDS`; tests/unit/infra/test_deployment_manifests.py checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence


def _ingest(args: Sequence[str]) -> None:
    from ingest.__main__ import main

    _no_arguments("ingest", args)
    main()


def _api(args: Sequence[str]) -> None:
    from api.__main__ import main

    _no_arguments("api", args)
    main()


def _processors(args: Sequence[str]) -> None:
    # Imported only here: the processors pull in Faust, PyTorch and the models.
    from processors.__main__ import main

    main(list(args))


def _migrate(args: Sequence[str]) -> None:
    from infra.services import prepare_storage
    from learnstream.settings import get_settings

    _no_arguments("migrate", args)
    applied = asyncio.run(prepare_storage(get_settings()))
    print(f"migrations applied: {applied or 'none (up to date)'}", file=sys.stderr)


def _create_topics(args: Sequence[str]) -> None:
    from learnstream.kafka import ensure_topics
    from learnstream.settings import get_settings

    _no_arguments("create-topics", args)
    created = ensure_topics(get_settings())
    print(f"topics created: {created or 'none (all exist)'}", file=sys.stderr)


def _init(args: Sequence[str]) -> None:
    _no_arguments("init", args)
    _migrate(())
    _create_topics(())


def _no_arguments(command: str, args: Sequence[str]) -> None:
    if args:
        raise SystemExit(f"error: `{command}` takes no arguments (got {' '.join(args)})")


# Command name -> runner of the remaining arguments. The manifests' tests read this.
COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "ingest": _ingest,
    "api": _api,
    "processors": _processors,
    "migrate": _migrate,
    "create-topics": _create_topics,
    "init": _init,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the service named by the first argument with the rest of the arguments."""
    parser = argparse.ArgumentParser(
        prog="learnstream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command")
    parsed = parser.parse_args(argv)
    COMMANDS[parsed.command](parsed.args)


if __name__ == "__main__":
    main()

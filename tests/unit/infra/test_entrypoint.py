"""infra.entrypoint: the image's command picks the service and hands it its arguments."""

from __future__ import annotations

import pytest

from infra.entrypoint import COMMANDS, main


def test_every_documented_command_is_there() -> None:
    assert set(COMMANDS) == {"ingest", "api", "processors", "migrate", "create-topics", "init"}


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worker"])
    assert exited.value.code == 2
    assert "invalid choice: 'worker'" in capsys.readouterr().err


def test_arguments_reach_the_processors_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # "--help" after the command is the processors' own option, not the entry point's.
    with pytest.raises(SystemExit) as exited:
        main(["processors", "--help"])
    assert exited.value.code == 0
    assert "usage: python -m processors" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["processors", "no_such_processor"])
    assert exited.value.code == 2


@pytest.mark.parametrize("command", ["ingest", "api", "migrate", "create-topics", "init"])
def test_commands_without_arguments_refuse_stray_ones(command: str) -> None:
    # A typo such as `api --port 9000` must fail, not start with the defaults.
    with pytest.raises(SystemExit, match=f"`{command}` takes no arguments"):
        main([command, "--port", "9000"])

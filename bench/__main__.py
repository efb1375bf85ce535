"""``make bench``: run every benchmark module in bench/, one process each.

Each module prints its own table and writes ``bench/results/<name>.json``. Figures
are measured, never asserted; a failing benchmark is reported and the rest still run.
``python -m bench NAME ...`` runs only the named ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Benchmark module names, e.g. ``scheduler_bkt``."""
    return sorted(
        p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "common"
    )


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmarks {unknown}; available: {available()}", file=sys.stderr)
        return 2
    failed = []
    for index, name in enumerate(names, 1):
        print(f"\n=== [{index}/{len(names)}] bench.{name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"=== bench.{name}: exit {code} after {time.perf_counter() - started:.1f} s")
        if code != 0:
            failed.append(name)
    print(
        f"\n{len(names) - len(failed)} of {len(names)} benchmarks ran; failed: {failed or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

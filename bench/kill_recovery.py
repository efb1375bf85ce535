"""Kill -9 recovery: the learner-state worker killed 20 times, against an uninterrupted run.

Run: ``.venv/bin/python -m bench.kill_recovery [--kills 20] [--records 12000] [--seed N]``.
Prints tables and writes ``bench/results/kill_recovery.json``; exits 1 when a view of
the killed run differs from the uninterrupted one (the figures are measured, the
equality is the point of the run). ``tests/integration/faults/test_processor_kill.py``
is the bounded version in ``make test`` (six kills, skill_mastery against a pure replay).

What runs (loopback, an environment of its own, stopped at the end):

1. The same real attempts with item ids (the AKT split of ASSISTments 2009, two
   tenants: one on FSRS, one on SM-2; fitted BKT skills and calibrated items, so every
   view is written) are produced to two topic namespaces, ``clean`` and ``killed``.
2. **Uninterrupted**: ``python -m processors learner_state``
   applies the ``clean`` topic to the end; its views are read and the view tables emptied.
3. **Killed**: the same worker on the ``killed`` topic, SIGKILLed ``--kills`` times at
   random points (batches of at most 100 records, so kills land inside batches too):
   alternately once a random number of records (50-400) more was applied
   plus 0-50 ms (inside batches, between the view write and the commit), and a random
   time after process start, from 0.2 s to 1 s past the previous restart's first commit
   (start-up, group join, or batches). Every kill must hit
   a worker with work left. Then it runs to the end.
4. Every view row (skill_mastery, learner_ability with its posterior, review_schedule,
   attempts) must be equal, column by column, to the uninterrupted run's, leaving out
   only wall-clock columns (``updated_at``, ``recorded_at``), ``version`` (a count of
   batches that wrote the row) and the topic name. Each attempt's MasteryUpdated on the derived
   topic must be present, with repeats (at-least-once) byte-identical to the clean run's.

Figures: time to the end of each run; per restart, seconds from process start to its
first committed batch; records re-read after kills (derived events published more than
once).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import bench_environment, percentiles, print_table, write_results
from learnstream import db
from learnstream.events.v1 import derived_pb2
from learnstream.kafka import Stream, ensure_topics
from learnstream.settings import Settings, get_settings
from processors.app import app_id
from tests.integration.processors.learners import (
    AKT_FILE,
    calibrated_items,
    fitted_parameters,
    read_item_attempts,
    write_parameters,
)
from tests.integration.processors.support import (
    WorkerProcess,
    applied_count,
    consume_all,
    offsets_reached,
    produce,
    wait_for,
    worker_env,
)

# Each view, its primary key and the columns left out of the comparison: wall-clock
# stamps, ``version`` (it counts writes, one per batch that touched the row, so it
# follows where batches happened to end), and the topic name (the two runs read topics
# of different namespaces).
_STAMPS = frozenset({"updated_at", "version"})
VIEWS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "skill_mastery": (("tenant_id", "user_id", "skill_id"), _STAMPS),
    "learner_ability": (("tenant_id", "user_id"), _STAMPS),
    "review_schedule": (("tenant_id", "user_id", "item_id"), _STAMPS),
    "attempts": (("tenant_id", "event_id"), frozenset({"recorded_at", "source_topic"})),
}
# Smaller batches than the default 500 (as in the test): more batch ends, so kills land
# at more different points of a batch's work.
BATCH_MAX = 100
PROGRESS_KILL = (50, 400)  # kill once this many more records were applied
# Or a random time after process start, from CLOCK_KILL_FROM_S to this long past the
# previous restart's first commit (~7 s here): most land in start-up or the group join,
# the rest while batches are applied, without running through the records.
CLOCK_KILL_FROM_S = 0.2
CLOCK_KILL_PAST_FIRST_COMMIT_S = 1.0
RUN_TIMEOUT_S = 600.0

ViewRows = dict[tuple[Any, ...], dict[str, Any]]


async def snapshot(pool: asyncpg.Pool) -> dict[str, ViewRows]:
    """Every view row, keyed by primary key, without the left-out columns."""
    views: dict[str, ViewRows] = {}
    for table, (key, skipped) in VIEWS.items():
        rows = await pool.fetch(f"SELECT * FROM {table}")
        views[table] = {
            tuple(row[k] for k in key): {k: v for k, v in row.items() if k not in skipped}
            for row in rows
        }
    return views


def derived_values(settings: Settings, causes: set[str]) -> tuple[dict[str, set[bytes]], int]:
    """MasteryUpdated values on the run's derived topic, per cause; and how many records."""
    values: dict[str, set[bytes]] = {}
    read = 0

    def every_cause_seen(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            cause = derived_pb2.MasteryUpdated.FromString(message.value()).cause_event_id
            values.setdefault(cause, set()).add(message.value())
        read = len(messages)
        return set(values) >= causes

    messages = consume_all(
        settings, settings.topic(Stream.MASTERY), until=every_cause_seen, timeout_s=60
    )
    return values, len(messages)


async def first_commit_s(
    pool: asyncpg.Pool, worker: WorkerProcess, group: str, topic: str, before: int
) -> float:
    """Seconds from the worker's process start to its first committed batch."""

    async def committed() -> bool:
        return await applied_count(pool, group, topic) > before

    seen = await wait_for(committed, what="a first batch", timeout_s=RUN_TIMEOUT_S, worker=worker)
    return seen - worker.started_at


async def uninterrupted(
    pool: asyncpg.Pool, settings: Settings, ends: dict[int, int], log: Path
) -> float:
    """Seconds from process start until every offset is stored."""
    group, topic = app_id(settings, "learner_state"), settings.topic(Stream.ATTEMPTS)
    worker = WorkerProcess("learner_state", worker_env(settings), log)
    worker.start()
    try:
        done = await wait_for(
            lambda: offsets_reached(pool, group, topic, ends),
            what="the uninterrupted run's end",
            timeout_s=RUN_TIMEOUT_S,
            worker=worker,
        )
        return done - worker.started_at
    finally:
        worker.kill(signal.SIGKILL)


async def killed(
    pool: asyncpg.Pool,
    settings: Settings,
    ends: dict[int, int],
    *,
    kills: int,
    rng: random.Random,
    log: Path,
) -> dict[str, Any]:
    """The run with ``kills`` SIGKILLs; its figures."""
    group, topic = app_id(settings, "learner_state"), settings.topic(Stream.ATTEMPTS)
    total = sum(ends.values())
    worker = WorkerProcess("learner_state", worker_env(settings), log)
    started = time.monotonic()
    applied_at_kill: list[int] = []
    restart_s: list[float] = []
    try:
        for number in range(kills):
            before = await applied_count(pool, group, topic)
            if before >= total:
                raise RuntimeError(
                    f"every record was applied before kill #{number + 1}: "
                    "run with more --records or fewer --kills"
                )
            worker.start()
            if number % 2:
                latest = restart_s[-1] + CLOCK_KILL_PAST_FIRST_COMMIT_S
                await asyncio.sleep(rng.uniform(CLOCK_KILL_FROM_S, latest))
            else:
                restart_s.append(await first_commit_s(pool, worker, group, topic, before))
                target = before + rng.randint(*PROGRESS_KILL)

                async def reached(target: int = target) -> bool:
                    return await applied_count(pool, group, topic) >= target

                await wait_for(
                    reached, what=f"{target} records applied", timeout_s=120, worker=worker
                )
                await asyncio.sleep(rng.uniform(0.0, 0.05))
            if not worker.alive():
                raise RuntimeError(f"worker died before kill #{number + 1}:\n{worker.log_tail()}")
            worker.kill(signal.SIGKILL)
            applied_at_kill.append(await applied_count(pool, group, topic))
            print(f"  kill {number + 1:>2}/{kills}: {applied_at_kill[-1]:,} of {total:,} applied")
        if applied_at_kill and applied_at_kill[-1] >= total:
            raise RuntimeError(f"the last kill hit a worker with no work left: {applied_at_kill}")
        before = await applied_count(pool, group, topic)
        worker.start()
        restart_s.append(await first_commit_s(pool, worker, group, topic, before))
        done = await wait_for(
            lambda: offsets_reached(pool, group, topic, ends),
            what="the killed run's end",
            timeout_s=RUN_TIMEOUT_S,
            worker=worker,
        )
    finally:
        worker.kill(signal.SIGKILL)
    return {
        "seconds": done - started,
        "applied_at_kill": applied_at_kill,
        "restart_to_first_commit_s": restart_s,
    }


def compare(clean: dict[str, ViewRows], after_kills: dict[str, ViewRows]) -> list[list[Any]]:
    """One row per view: rows in each run, rows that differ, the first and its columns."""
    rows = []
    for table in VIEWS:
        a, b = clean[table], after_kills[table]
        differing = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=repr)
        example = ""
        if differing:
            first, second = a.get(differing[0], {}), b.get(differing[0], {})
            columns = sorted(
                c for c in first.keys() | second.keys() if first.get(c) != second.get(c)
            )
            example = f"{differing[0]!r}: {', '.join(columns)}"
        rows.append([table, len(a), len(b), len(differing), example])
    return rows


async def main(arguments: argparse.Namespace) -> int:
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    data = get_settings().dataset_dir
    specs = read_item_attempts(data / AKT_FILE, learners=400, limit=arguments.records)
    records = [(spec.key(), spec.value()) for spec in specs]
    causes = {spec.event_id for spec in specs}
    print(f"{len(specs):,} attempts of {len({s.user_id for s in specs})} learners, seed {seed}")
    async with bench_environment("kill_recovery") as env:
        runs = {}
        for suffix in ("clean", "killed"):
            settings = env.settings.model_copy(
                update={
                    "kafka_topic_namespace": f"{env.settings.kafka_topic_namespace}-{suffix}",
                    "processor_batch_max": BATCH_MAX,
                }
            )
            ensure_topics(settings)
            runs[suffix] = (settings, produce(settings, settings.topic(Stream.ATTEMPTS), records))
        pool = await db.create_pool(env.settings, max_size=2)
        try:
            await write_parameters(pool, fitted_parameters(specs), calibrated_items(specs))
            settings, ends = runs["clean"]
            print("uninterrupted run ...", flush=True)
            clean_s = await uninterrupted(pool, settings, ends, env.settings.run_dir / "clean.log")
            clean_views = await snapshot(pool)
            # DELETE: the pool is the services' role, which may not TRUNCATE.
            await pool.execute("; ".join(f"DELETE FROM {view}" for view in VIEWS))
            settings, ends = runs["killed"]
            print(f"run with {arguments.kills} kills ...", flush=True)
            figures = await killed(
                pool,
                settings,
                ends,
                kills=arguments.kills,
                rng=rng,
                log=env.settings.run_dir / "killed.log",
            )
            killed_views = await snapshot(pool)
        finally:
            await pool.close()
        clean_derived, clean_count = derived_values(runs["clean"][0], causes)
        killed_derived, killed_count = derived_values(runs["killed"][0], causes)

    view_rows = compare(clean_views, killed_views)
    missing = len(causes - set(killed_derived))
    repeats_differ = sum(len(values) > 1 for values in killed_derived.values())
    not_as_clean = sum(killed_derived.get(c) != clean_derived.get(c) for c in causes)
    restarts = percentiles([1000 * s for s in figures["restart_to_first_commit_s"]])
    print_table(
        f"Views after {arguments.kills} kills -9 vs an uninterrupted run ({len(specs):,} attempts)",
        ["view", "rows (clean)", "rows (killed)", "rows differing", "first differing row: columns"],
        view_rows,
    )
    print_table(
        "MasteryUpdated on the derived topic",
        ["run", "records", "causes", "missing", "repeats not identical", "differs from clean"],
        [
            [
                "uninterrupted",
                clean_count,
                len(clean_derived),
                len(causes - set(clean_derived)),
                0,
                0,
            ],
            ["killed", killed_count, len(killed_derived), missing, repeats_differ, not_as_clean],
        ],
    )
    print_table(
        "Time",
        ["run", "seconds", "restart to first commit p50 s", "max s", "records re-published"],
        [
            ["uninterrupted", round(clean_s, 1), "", "", ""],
            [
                f"{arguments.kills} kills",
                round(figures["seconds"], 1),
                round(restarts["p50_ms"] / 1000, 2),
                round(restarts["max_ms"] / 1000, 2),
                killed_count - clean_count,
            ],
        ],
    )
    identical = all(row[3] == 0 and row[1] == row[2] for row in view_rows) and not (
        missing or repeats_differ or not_as_clean
    )
    print(f"\nviews and derived events identical to the uninterrupted run: {identical}")
    path = write_results(
        "kill_recovery",
        {
            "seed": seed,
            "attempts": len(specs),
            "kills": arguments.kills,
            "identical": identical,
            "views": {
                row[0]: dict(zip(("clean", "killed", "differing"), row[1:4], strict=True))
                for row in view_rows
            },
            "derived": {
                "clean_records": clean_count,
                "killed_records": killed_count,
                "missing": missing,
                "repeats_not_identical": repeats_differ,
                "differs_from_clean": not_as_clean,
            },
            "uninterrupted_s": clean_s,
            **figures,
        },
    )
    print(f"written: {path}")
    return 0 if identical else 1


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.kill_recovery", description=__doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--records", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=None, help="kill schedule seed (printed)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))

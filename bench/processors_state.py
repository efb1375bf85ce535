"""Throughput of the learner-state processor, and of its pure step alone.

Run: ``.venv/bin/python -m bench.processors_state [--records N] [--batch N]``.
Prints a table and writes ``bench/results/processors_state.json``.

Same real answers for every row (the AKT split of ASSISTments 2009: problem ids,
skills, two tenants), fed to :class:`processors.base.BatchRunner` in batches exactly
as a worker would feed them (one PostgreSQL transaction per batch with the offsets,
derived records published and acknowledged before the commit), but without Faust or
a consumer: the figure is the processing core (views committed per second), the
part that differs between configurations. Rows:

1. ``learner_state``, nothing fitted: attempts history, skill_mastery (defaults),
   review_schedule (FSRS/SM-2); ability skipped (no calibrated items);
2. ``learner_state``, fitted BKT for a third of the skills and calibrated items for
   two thirds: everything, including the EAP ability update;
3. the pure step of (2) alone (:func:`processors.learner_state.learner_changes`),
   no database: what the algorithms cost per attempt.

The mastery-only processor these rows were first compared with (skill_mastery alone,
2,200-3,800 attempts/s, docs/operations.md) was retired with its command name.

Redis hot-cache refreshes after each commit are included in (1) and (2). Objects alive
before the first batch are frozen out of the garbage collector, as in a worker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import zlib
from collections.abc import Sequence
from typing import Any

from bench.common import bench_environment, print_table, write_results
from learnstream import db
from learnstream.kafka import Stream, learner_key
from learnstream.settings import Settings, get_settings
from learnstream.views.calibration import ItemParams
from processors.base import BatchRunner, Processor
from processors.events import Attempt, decode_attempt
from processors.learner_state import (
    LearnerParameters,
    LearnerStateProcessor,
    LearnerStates,
    learner_changes,
)
from processors.offsets import SourceRecord
from tests.integration.processors.learners import (
    AKT_FILE,
    SCHEDULERS,
    ItemAttempt,
    calibrated_items,
    fitted_parameters,
    read_item_attempts,
    write_parameters,
)

PARTITIONS = 4
VIEWS = ("skill_mastery", "learner_ability", "review_schedule", "attempts", "processor_offsets")


def as_consumed(settings: Settings, specs: Sequence[ItemAttempt]) -> list[SourceRecord]:
    """The records a consumer would see: one partition per learner, offsets counting up."""
    topic = settings.topic(Stream.ATTEMPTS)
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    records = []
    for spec in specs:
        partition = zlib.crc32(learner_key(spec.tenant_id, spec.user_id)) % PARTITIONS
        records.append(SourceRecord(topic, partition, offsets[partition], spec.key(), spec.value()))
        offsets[partition] += 1
    return records


async def run(
    processor: Processor[Any], settings: Settings, records: list[SourceRecord], batch: int
) -> dict[str, float]:
    runner = BatchRunner(processor, settings, consumer_group=f"bench.{processor.name}")
    await runner.warm_up()
    # As a worker does after its first batch (processors.base.attach): what is alive now
    # (the records, modules, pools) is not scanned by every full collection.
    gc.collect()
    gc.freeze()
    seconds: list[float] = []
    started = time.perf_counter()
    try:
        for start in range(0, len(records), batch):
            before = time.perf_counter()
            await runner.process(records[start : start + batch])
            seconds.append(time.perf_counter() - before)
    finally:
        await runner.close()
    total = time.perf_counter() - started
    seconds.sort()
    return {
        "events_per_s": len(records) / total,
        "batch_ms_p50": 1000 * seconds[len(seconds) // 2],
        "batch_ms_p95": 1000 * seconds[int(len(seconds) * 0.95)],
    }


def pure_step(specs: Sequence[ItemAttempt], records: list[SourceRecord], batch: int) -> float:
    """Attempts per second of learner_changes alone, batch by batch, states carried over."""
    bkt, items = fitted_parameters(specs), calibrated_items(specs)
    parameters = LearnerParameters(
        bkt=bkt, items={k: ItemParams(*v) for k, v in items.items()}, scheduler=SCHEDULERS
    )
    attempts: list[Attempt] = [decode_attempt(r) for r in records]
    states = LearnerStates({}, {}, {}, {}, {}, {})
    started = time.perf_counter()
    for start in range(0, len(attempts), batch):
        changes = learner_changes(
            attempts[start : start + batch], states, parameters, mastery_topic="m"
        )
        states = LearnerStates(
            {**states.mastery, **changes.mastery},
            {},
            {**states.ability, **changes.ability},
            {},
            {**states.reviews, **changes.reviews},
            {},
        )
    return len(attempts) / (time.perf_counter() - started)


async def main(records_wanted: int, batch: int) -> None:
    data = get_settings().dataset_dir
    specs = read_item_attempts(data / AKT_FILE, learners=400, limit=records_wanted)
    async with bench_environment("processors_state", topic_partitions=PARTITIONS) as env:
        settings = env.settings
        records = as_consumed(settings, specs)
        pool = await db.create_pool(settings, max_size=2)
        results: dict[str, dict[str, float]] = {}
        try:

            async def clean() -> None:
                # DELETE: the pool is the services' role, which may not TRUNCATE.
                await pool.execute("; ".join(f"DELETE FROM {view}" for view in VIEWS))

            await clean()
            results["learner_state, nothing fitted"] = await run(
                LearnerStateProcessor(settings), settings, records, batch
            )
            await clean()
            await write_parameters(pool, fitted_parameters(specs), calibrated_items(specs))
            results["learner_state, fitted + calibrated"] = await run(
                LearnerStateProcessor(settings), settings, records, batch
            )
            ability_rows = await pool.fetchval("SELECT count(*) FROM learner_ability")
        finally:
            await pool.close()
    pure = pure_step(specs, records, batch)
    rows = [
        [name, round(r["events_per_s"]), round(r["batch_ms_p50"], 1), round(r["batch_ms_p95"], 1)]
        for name, r in results.items()
    ]
    rows.append(["learner_changes alone (no database)", round(pure), "", ""])
    print_table(
        f"Views committed per second, {len(records):,} real attempts, batches of {batch} "
        f"({ability_rows} learners with an ability)",
        ["processor", "attempts/s", "batch p50 ms", "batch p95 ms"],
        rows,
    )
    write_results(
        "processors_state",
        {"records": len(records), "batch": batch, "runs": results, "pure_step_per_s": pure},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.records, arguments.batch))

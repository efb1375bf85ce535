"""kill -9 recovery of the mastery worker: nothing lost, nothing counted twice.

Real ASSISTments attempts are produced as a live stream while mastery workers
(subprocesses, ``python -m processors mastery``) come and go: two share the
partitions, one is SIGKILLed and the other takes over, one stops with SIGTERM, one
more is SIGKILLed, the last runs to the end (tests/integration/processors/scenarios.py).

skill_mastery must then equal a plain scheduler.bkt replay exactly, and the
mastery topic must hold a MasteryUpdated for every attempt, repeats
(at-least-once) being identical copies. The random seed is in every failure
message; figures (seconds from process start to first progress, events/s) are
logged at INFO: run with ``-o log_cli=true --log-cli-level=INFO`` to see them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from learnstream.events.v1 import derived_pb2
from learnstream.kafka import Stream
from learnstream.settings import Settings
from tests.integration.processors.scenarios import run_kill_scenario
from tests.integration.processors.support import (
    DATASET,
    consume_all,
    expected_mastery,
    read_attempts,
    stored_mastery,
)

ATTEMPTS = 8000


@pytest.mark.slow
async def test_killed_workers_resume_without_loss_or_double_counting(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    # Small batches: more commits per second, so a kill lands mid-transaction more often.
    settings = topics.model_copy(update={"processor_web_port": 0, "processor_batch_max": 100})
    specs = read_attempts(shared_data / DATASET, students=100, limit=ATTEMPTS)
    run = await run_kill_scenario(
        "mastery",
        settings,
        db_pool,
        settings.topic(Stream.ATTEMPTS),
        [(spec.key(), spec.value()) for spec in specs],
        tmp_path,
    )
    seed = run.seed

    assert await stored_mastery(db_pool) == expected_mastery(specs), f"seed {seed}"

    causes = {spec.event_id for spec in specs}
    copies: dict[str, set[bytes]] = {}
    read = 0

    def every_cause_seen(messages: list[Any]) -> bool:
        nonlocal read
        for message in messages[read:]:
            event = derived_pb2.MasteryUpdated.FromString(message.value())
            copies.setdefault(event.cause_event_id, set()).add(message.value())
        read = len(messages)
        return set(copies) >= causes

    consume_all(settings, settings.topic(Stream.MASTERY), until=every_cause_seen, timeout_s=30)
    assert set(copies) == causes, f"seed {seed}"
    assert all(len(values) == 1 for values in copies.values()), f"seed {seed}: repeats differ"

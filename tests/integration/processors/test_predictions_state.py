"""In-memory learner state is only a cache of prediction_learner_state.

In process, on the real PostgreSQL: batches are applied as the BatchRunner applies
them, some transactions are rolled back after apply (as when publishing or storing
offsets fails) and retried, and memory is dropped after every batch; the predictions
must still equal one uninterrupted replay.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import pytest
import torch

from learnstream.settings import Settings
from ml.models import ModelConfig, build_model
from ml.prediction_state import CHAMPION_ROLE
from ml.registry import LoadedModel
from ml.serving import BKTTracer, ModelTracer
from processors import predictions
from processors.base import Decoded
from processors.events import Attempt
from processors.offsets import SourceRecord
from processors.predictions import PredictionsProcessor, Served
from tests.integration.processors.support import DATASET, AttemptSpec, read_attempts
from tests.integration.processors.test_predictions_worker import (
    assert_close,
    expected_predictions,
    stored_predictions,
)

CPU = torch.device("cpu")


class RolledBack(Exception):
    """Raised inside a batch's transaction after apply, to roll it back."""


def decoded(specs: list[AttemptSpec]) -> list[Decoded[Attempt]]:
    return [
        Decoded(
            SourceRecord("attempts", 0, offset, spec.key(), spec.value()),
            Attempt(
                event_id=spec.event_id,
                tenant_id=spec.tenant_id,
                user_id=spec.user_id,
                session_id="",
                skill_ids=spec.skill_ids,
                correct=spec.correct,
                score=float(spec.correct),
                occurred_at=spec.occurred_at,
            ),
        )
        for offset, spec in enumerate(specs)
    ]


def tracer(kind: str, vocabulary: tuple[str, ...]) -> ModelTracer | BKTTracer:
    if kind == "bkt":
        return BKTTracer()
    torch.manual_seed(4)
    model = build_model(ModelConfig(kind="dkt_lstm", num_skills=len(vocabulary), hidden_dim=6), CPU)
    model.eval()
    return ModelTracer(LoadedModel(model, vocabulary, 30, "tiny@1"), CPU)


async def apply_then_roll_back(
    pool: asyncpg.Pool, processor: PredictionsProcessor, batch: list[Decoded[Attempt]]
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await processor.apply(conn, batch)
        raise RolledBack


@pytest.mark.parametrize("kind", ["bkt", "dkt"])
@pytest.mark.parametrize("forget", [False, True])
async def test_rollbacks_and_dropped_memory_give_the_uninterrupted_predictions(
    migrated_database: Settings,
    db_pool: asyncpg.Pool,
    shared_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    forget: bool,
) -> None:
    torch.set_num_threads(1)
    if forget:
        monkeypatch.setattr(predictions, "MAX_CACHED_LEARNERS", 0)
    specs = read_attempts(shared_data / DATASET, students=12, limit=400)
    vocabulary = tuple(sorted({s for spec in specs for s in spec.skill_ids}))
    served = tracer(kind, vocabulary)
    label = "bkt" if isinstance(served, BKTTracer) else served.loaded.label
    processor = PredictionsProcessor(migrated_database, name=f"predictions-state-{kind}")
    processor.champion = Served(CHAMPION_ROLE, served, "1", label)
    processor._next_poll = time.monotonic() + 3600  # no registry: this tracer only
    events = decoded(specs)
    for number, start in enumerate(range(0, len(events), 37)):
        batch = events[start : start + 37]
        if number % 3 == 1:
            # Applied, then rolled back: memory is ahead of the rows until re-synced.
            with pytest.raises(RolledBack):
                await apply_then_roll_back(db_pool, processor, batch)
        async with db_pool.acquire() as conn, conn.transaction():
            await processor.apply(conn, batch)

    expected = expected_predictions(tracer(kind, vocabulary), specs, label)
    assert_close(await stored_predictions(db_pool), expected, 1e-6, f"{kind} forget={forget}")

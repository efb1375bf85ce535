"""A champion whose inference fails: the batch is served by BKT, and the metrics say so.

In process, on the real PostgreSQL: the processor's apply runs in a transaction as the
BatchRunner runs it. The broken champion is a real model whose embedding has fewer
skills than its vocabulary, so the first answer on a later skill raises in torch.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import torch
from prometheus_client import REGISTRY

from learnstream.settings import Settings
from ml.models import ModelConfig, build_model
from ml.prediction_state import CHAMPION_ROLE
from ml.registry import LoadedModel
from ml.serving import BKTTracer, ModelTracer
from processors.base import Decoded
from processors.events import Attempt
from processors.offsets import SourceRecord
from processors.predictions import PredictionsProcessor, Served
from tests.integration.processors.support import DATASET, read_attempts
from tests.integration.processors.test_predictions_worker import (
    expected_predictions,
    stored_predictions,
)

CPU = torch.device("cpu")


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_failed_inference_falls_back_to_bkt_for_the_batch(
    migrated_database: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = migrated_database.model_copy(update={"data_dir": tmp_path / "store"})
    specs = read_attempts(shared_data / DATASET, students=10, limit=200)
    vocabulary = tuple(sorted({s for spec in specs for s in spec.skill_ids}))
    broken = build_model(ModelConfig(kind="dkt_lstm", num_skills=1, hidden_dim=4), CPU)
    broken.eval()
    processor = PredictionsProcessor(settings, name="predictions-fallback-test")
    tracer = ModelTracer(LoadedModel(broken, vocabulary, 20, "broken@1"), CPU)
    processor.champion = Served(CHAMPION_ROLE, tracer, "1", "broken@1")
    processor._next_poll = time.monotonic() + 3600  # keep the broken champion for this batch
    batch = [
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
    before = _sample(
        "learnstream_model_fallbacks_total",
        processor="predictions-fallback-test",
        reason="inference_error",
    )

    async with db_pool.acquire() as conn, conn.transaction():
        await processor.apply(conn, batch)

    assert processor.champion is not None
    assert processor.champion.kind == "bkt"
    got = await stored_predictions(db_pool)
    assert got == expected_predictions(BKTTracer(), specs, "bkt")
    after = _sample(
        "learnstream_model_fallbacks_total",
        processor="predictions-fallback-test",
        reason="inference_error",
    )
    assert after == before + 1
    labels = {"processor": "predictions-fallback-test"}
    assert _sample("learnstream_model_in_use", **labels, kind="bkt") == 1.0
    assert _sample("learnstream_model_in_use", **labels, kind="dkt") == 0.0

"""kill -9 recovery of the predictions worker serving a tiny DKT champion.

Real ASSISTments attempts are produced over all partitions; the worker is SIGKILLed
twice and SIGTERMed once at random points (tests/integration/processors/crash.py) and
restarted each time, each restart rebuilding learners' recurrent state from
prediction_learner_state. skill_predictions must then equal an uninterrupted replay of
every learner's attempts through the same model (up to float rounding of batches of
other sizes), and each learner's state and the champion's shadow score must have
counted every attempt exactly once.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import asyncpg
import torch

from learnstream.kafka import Stream
from learnstream.settings import Settings
from ml.registry import CHAMPION, ModelRegistry
from ml.serving import ModelTracer
from tests.integration.processors.crash import produce_in_order, run_with_kills
from tests.integration.processors.support import DATASET, read_attempts
from tests.integration.processors.test_predictions_worker import (
    assert_close,
    expected_predictions,
    register_model,
    set_alias,
    stored_predictions,
    train_tiny_model,
)

log = logging.getLogger(__name__)
CPU = torch.device("cpu")


async def test_killed_predictions_worker_ends_with_the_uninterrupted_predictions(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    settings = topics.model_copy(
        update={
            "processor_web_port": 0,
            "processor_batch_max": 100,
            "data_dir": tmp_path / "store",
        }
    )
    specs = read_attempts(shared_data / DATASET, students=60, limit=3000, first_student=40)
    model, vocabulary = train_tiny_model(specs, seed=3)
    version = register_model(settings, model, vocabulary, tmp_path / "model")
    set_alias(settings, CHAMPION, version)
    topic = settings.topic(Stream.ATTEMPTS)
    ends = produce_in_order(settings, [(topic, s.key(), s.value()) for s in specs], partition=None)

    report = await run_with_kills(
        "predictions",
        settings,
        db_pool,
        ends,
        log_dir=tmp_path,
        rng=random.Random(seed),
        what=f"seed {seed}",
    )
    log.info("predictions drill: seed=%d %s", seed, report)

    loaded = ModelRegistry(settings).load_version(settings.ml_model_name, version, CPU)
    expected = expected_predictions(ModelTracer(loaded, CPU), specs, loaded.label)
    assert_close(await stored_predictions(db_pool), expected, 1e-5, f"seed {seed}")

    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.user_id] = counts.get(spec.user_id, 0) + 1
    rows = await db_pool.fetch(
        "SELECT user_id, answers_seen FROM prediction_learner_state WHERE role = 'champion'"
    )
    assert {r["user_id"]: r["answers_seen"] for r in rows} == counts, f"seed {seed}"
    # Scores are exactly-once too: every attempt but each learner's first is scored once.
    scored = await db_pool.fetchval(
        "SELECT n FROM model_shadow_scores WHERE role = 'champion' AND subgroup_kind = 'all'"
    )
    assert scored == len(specs) - len(counts), f"seed {seed}"

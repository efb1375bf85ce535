"""The predictions processor's own throughput: attempts served per second, in process.

``python -m bench.predictions`` feeds real ASSISTments 2009 attempts (learners
interleaved as live traffic) straight to :class:`processors.predictions.PredictionsProcessor`
``apply`` in one PostgreSQL transaction per batch, as the BatchRunner does (the broker
and the offsets bookkeeping are left out), with an untrained production-sized DKT-LSTM
(embedding and hidden 100) registered in a temporary MLflow store. Scenarios: BKT
fallback, DKT champion, DKT champion + challenger in shadow, each at batches of 500
and of 1 attempt. Prints a table and writes ``bench/results/predictions.json``.
Model loading happens before the clock starts. Model-only rates (no database):
``bench/ml_dkt.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import torch

from bench.common import bench_environment, machine, print_table, write_results
from learnstream import db
from learnstream.settings import Settings
from ml.datasets import SourcePart
from ml.models import ModelConfig, build_model
from ml.registry import CHALLENGER, CHAMPION, ModelRegistry, save_model
from processors.base import Decoded
from processors.events import Attempt
from processors.offsets import SourceRecord
from processors.predictions import PredictionsProcessor

DATASET = "assistments2009_dkvmn/assist2009_updated_train.csv"
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def read_attempts(settings: Settings, learners: int, limit: int) -> list[Attempt]:
    """Up to ``limit`` attempts of the first ``learners`` learners, interleaved."""
    lines = (settings.dataset_dir / DATASET).read_text().split()
    sequences = [
        list(zip(lines[i + 1].split(","), lines[i + 2].split(","), strict=True))
        for i in range(0, 3 * learners, 3)
    ]
    attempts: list[Attempt] = []
    step = 0
    while len(attempts) < limit and any(step < len(s) for s in sequences):
        for number, sequence in enumerate(sequences):
            if step < len(sequence) and len(attempts) < limit:
                skill, flag = sequence[step]
                attempts.append(
                    Attempt(
                        event_id=str(uuid.uuid4()),
                        tenant_id="bench",
                        user_id=f"learner-{number}",
                        session_id="",
                        skill_ids=(skill,),
                        correct=flag == "1",
                        score=float(flag == "1"),
                        occurred_at=T0 + timedelta(seconds=len(attempts)),
                        item_id=f"item-{skill}",
                    )
                )
        step += 1
    return attempts


def register(settings: Settings, vocabulary: tuple[str, ...], seed: int) -> str:
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(kind="dkt_lstm", num_skills=len(vocabulary)), torch.device("cpu")
    )
    folder = settings.run_dir / f"model-{seed}"
    save_model(model, vocabulary, 200, folder)
    registry = ModelRegistry(settings)
    run_id = registry.log_training_run(
        experiment="bench-predictions",
        run_name=f"untrained-{seed}",
        params={},
        metrics={},
        epoch_metrics=[],
        snapshot={"train": [SourcePart(DATASET, 0)]},
        fingerprint="bench",
        model_folder=folder,
    )
    return registry.register(settings.ml_model_name, run_id, auc=0.5, fingerprint="bench")


async def serve(settings: Settings, attempts: list[Attempt], batch: int) -> dict[str, Any]:
    conn = await db.connect(settings)
    try:
        # DELETE: the connection is the services' role, which may not TRUNCATE.
        await conn.execute(
            "DELETE FROM skill_predictions; DELETE FROM prediction_learner_state; "
            "DELETE FROM model_shadow_scores"
        )
        processor = PredictionsProcessor(settings)
        await asyncio.to_thread(processor.poll_registry)  # load outside the clock
        processor._next_poll = time.monotonic() + 3600  # no re-poll while measuring
        decoded = [
            Decoded(SourceRecord("attempts", 0, offset, None, None), attempt)
            for offset, attempt in enumerate(attempts)
        ]
        started = time.perf_counter()
        for start in range(0, len(decoded), batch):
            async with conn.transaction():
                await processor.apply(conn, decoded[start : start + batch])
        seconds = time.perf_counter() - started
        rows = await conn.fetchval("SELECT count(*) FROM skill_predictions")
    finally:
        await conn.close()
    assert processor.champion is not None
    return {
        "champion": processor.champion.label,
        "challenger": processor.challenger.label if processor.challenger else "",
        "batch": batch,
        "attempts": len(attempts),
        "seconds": seconds,
        "attempts_per_s": len(attempts) / seconds,
        "prediction_rows": int(rows),
    }


async def run(learners: int, limit: int, single_limit: int) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    results: list[dict[str, Any]] = []
    async with bench_environment("predictions") as env:
        settings = env.settings.model_copy(update={"predictions_shadow": True})
        attempts = read_attempts(settings, learners, limit)
        vocabulary = tuple(sorted({s for a in attempts for s in a.skill_ids}))
        for scenario in ("bkt", "dkt", "dkt+challenger"):
            if scenario == "dkt":
                set_alias(settings, CHAMPION, register(settings, vocabulary, 1))
            if scenario == "dkt+challenger":
                set_alias(settings, CHALLENGER, register(settings, vocabulary, 2))
            for batch, subset in ((500, attempts), (1, attempts[:single_limit])):
                result = await serve(settings, subset, batch)
                results.append({"scenario": scenario, **result})
    return results


def set_alias(settings: Settings, alias: str, version: str) -> None:
    ModelRegistry(settings).client.set_registered_model_alias(
        settings.ml_model_name, alias, version
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--attempts", type=int, default=10_000)
    parser.add_argument("--single-attempts", type=int, default=500)
    args = parser.parse_args()
    results = asyncio.run(run(args.learners, args.attempts, args.single_attempts))
    print_table(
        "predictions processor, in process (PostgreSQL, 1 torch thread)",
        ["scenario", "batch", "attempts", "seconds", "attempts/s", "prediction rows"],
        [
            (
                r["scenario"],
                r["batch"],
                r["attempts"],
                r["seconds"],
                r["attempts_per_s"],
                r["prediction_rows"],
            )
            for r in results
        ],
    )
    write_results("predictions", {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()

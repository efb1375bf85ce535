"""The predictions worker (``python -m processors predictions``) on the real broker,
PostgreSQL and a temporary MLflow store holding tiny DKT models trained here.

Proves: with no model registered it serves BKT (skill_predictions equal a BKTTracer
replay) and says so in /metrics; with a champion it serves the model (equal to an
in-process ModelTracer replay); when the champion alias moves it reloads, rebuilds the
learners' state with the new model, and scores the challenger in shadow per subgroup.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import httpx
import torch

from infra.services import free_port
from learnstream.kafka import Stream
from learnstream.settings import Settings
from ml.datasets import SourcePart
from ml.models import ModelConfig, build_model
from ml.prediction_state import explain_prediction, format_shadow_report, read_shadow_scores
from ml.registry import CHALLENGER, CHAMPION, ModelRegistry, save_model
from ml.serving import AttemptInput, BKTTracer, ModelTracer
from processors.app import app_id
from tests.integration.processors.support import (
    DATASET,
    AttemptSpec,
    WorkerProcess,
    offsets_reached,
    produce,
    read_attempts,
    running_worker,
    wait_for,
    worker_env,
)

log = logging.getLogger(__name__)
CPU = torch.device("cpu")
Predictions = dict[tuple[str, str, str], tuple[float, str]]


def train_tiny_model(
    specs: Sequence[AttemptSpec], *, seed: int, steps: int = 15
) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """A DKT-LSTM (hidden 8) trained a few Adam steps on ``specs``' learners: seconds."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    vocabulary = tuple(sorted({s for spec in specs for s in spec.skill_ids}))
    index = {s: i for i, s in enumerate(vocabulary)}
    model = build_model(
        ModelConfig(kind="dkt_lstm", num_skills=len(vocabulary), embedding_dim=8, hidden_dim=8),
        CPU,
    )
    by_learner: dict[str, list[tuple[int, float]]] = {}
    for spec in specs:
        by_learner.setdefault(spec.user_id, []).append(
            (index[spec.skill_ids[0]], float(spec.correct))
        )
    width = max(len(v) for v in by_learner.values())
    skills = torch.zeros(len(by_learner), width, dtype=torch.int64)
    correct = torch.zeros(len(by_learner), width)
    mask = torch.zeros(len(by_learner), width)
    for row, answers in enumerate(by_learner.values()):
        for t, (skill, answer) in enumerate(answers):
            skills[row, t], correct[row, t], mask[row, t] = skill, answer, 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        logits = model(skills, correct)[:, 1:]
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, correct[:, 1:], reduction="none"
        )
        loss = (losses * mask[:, 1:]).sum() / mask[:, 1:].sum()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    model.eval()
    return model, vocabulary


def register_model(
    settings: Settings, model: torch.nn.Module, vocabulary: tuple[str, ...], folder: Path
) -> str:
    """Log and register ``model`` under settings.ml_model_name; returns the version."""
    from ml.models import KnowledgeTracer

    assert isinstance(model, KnowledgeTracer)
    save_model(model, vocabulary, 50, folder)
    registry = ModelRegistry(settings)
    run_id = registry.log_training_run(
        experiment="predictions-test",
        run_name=folder.name,
        params={"model_kind": "dkt_lstm"},
        metrics={"test_auc": 0.7},
        epoch_metrics=[],
        snapshot={"train": [SourcePart("test", 1)]},
        fingerprint="test",
        model_folder=folder,
    )
    return registry.register(settings.ml_model_name, run_id, auc=0.7, fingerprint="test")


def set_alias(settings: Settings, alias: str, version: str) -> None:
    registry = ModelRegistry(settings)
    registry.client.set_registered_model_alias(settings.ml_model_name, alias, version)


def inputs_of(specs: Sequence[AttemptSpec]) -> list[AttemptInput]:
    return [AttemptInput(f"{s.tenant_id}:{s.user_id}", s.skill_ids, s.correct) for s in specs]


def expected_predictions(
    tracer: ModelTracer | BKTTracer, specs: Sequence[AttemptSpec], label: str
) -> Predictions:
    """Each learner's P(correct) per skill after their last attempt, from one replay."""
    finals: dict[str, dict[str, float]] = {}
    for result in tracer.observe(inputs_of(specs)):
        if result.p_correct:
            finals[result.learner_id] = dict(result.p_correct)
    expected: Predictions = {}
    for learner, p_correct in finals.items():
        tenant_id, user_id = learner.split(":", 1)
        for skill, p in p_correct.items():
            expected[(tenant_id, user_id, skill)] = (p, label)
    return expected


async def stored_predictions(pool: asyncpg.Pool) -> Predictions:
    rows = await pool.fetch(
        "SELECT tenant_id, user_id, skill_id, p_correct, model_version FROM skill_predictions"
    )
    return {
        (r["tenant_id"], r["user_id"], r["skill_id"]): (r["p_correct"], r["model_version"])
        for r in rows
    }


def assert_close(got: Predictions, expected: Predictions, tolerance: float, what: str) -> None:
    assert got.keys() == expected.keys(), what
    worst = max(abs(got[k][0] - expected[k][0]) for k in expected)
    assert worst <= tolerance, f"{what}: largest difference {worst}"
    assert {v[1] for v in got.values()} == {v[1] for v in expected.values()}, what


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def run_until_applied(
    settings: Settings, pool: asyncpg.Pool, ends: dict[int, int], worker: WorkerProcess
) -> None:
    group = app_id(settings, "predictions")
    topic = settings.topic(Stream.ATTEMPTS)

    async def done() -> bool:
        return await offsets_reached(pool, group, topic, ends)

    await wait_for(done, what="all attempts applied", timeout_s=120, worker=worker)


async def test_without_a_registered_model_the_worker_serves_bkt_and_says_so(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(
        update={"processor_web_port": free_port(), "data_dir": tmp_path / "empty-store"}
    )
    specs = read_attempts(shared_data / DATASET, students=20, limit=600)
    ends = produce(settings, settings.topic(Stream.ATTEMPTS), [(s.key(), s.value()) for s in specs])
    with running_worker("predictions", worker_env(settings), tmp_path / "w.log") as worker:
        await run_until_applied(settings, db_pool, ends, worker)
        async with httpx.AsyncClient() as client:
            page = await client.get(f"http://127.0.0.1:{settings.processor_web_port}/metrics")
    got = await stored_predictions(db_pool)
    assert_close(got, expected_predictions(BKTTracer(), specs, "bkt"), 1e-12, "bkt fallback")
    assert metric(page.text, "learnstream_model_in_use", kind="bkt") == 1.0
    assert metric(page.text, "learnstream_model_in_use", kind="dkt") == 0.0
    assert metric(page.text, "learnstream_model_fallbacks_total", reason="no_model") >= 1.0
    assert metric(page.text, "learnstream_predictions_total", role="champion") == len(specs)


async def test_worker_serves_the_champion_reloads_it_and_scores_the_challenger(
    topics: Settings, db_pool: asyncpg.Pool, shared_data: Path, tmp_path: Path
) -> None:
    settings = topics.model_copy(
        update={
            "processor_web_port": free_port(),
            "data_dir": tmp_path / "store",
            "predictions_registry_poll_s": 0.5,
        }
    )
    specs = read_attempts(shared_data / DATASET, students=20, limit=800)
    first, second = specs[:400], specs[400:]
    model_1, vocabulary = train_tiny_model(specs, seed=1)
    model_2, _ = train_tiny_model(specs, seed=2, steps=30)
    version_1 = register_model(settings, model_1, vocabulary, tmp_path / "m1")
    set_alias(settings, CHAMPION, version_1)
    label_1 = f"{settings.ml_model_name}@{version_1}"
    topic = settings.topic(Stream.ATTEMPTS)
    registry = ModelRegistry(settings)

    with running_worker("predictions", worker_env(settings), tmp_path / "w.log") as worker:
        ends = produce(settings, topic, [(s.key(), s.value()) for s in first])
        await run_until_applied(settings, db_pool, ends, worker)
        served_1 = ModelTracer(registry.load_version(settings.ml_model_name, version_1, CPU), CPU)
        got = await stored_predictions(db_pool)
        assert_close(got, expected_predictions(served_1, first, label_1), 1e-5, "champion 1")

        version_2 = register_model(settings, model_2, vocabulary, tmp_path / "m2")
        set_alias(settings, CHAMPION, version_2)
        set_alias(settings, CHALLENGER, version_1)
        label_2 = f"{settings.ml_model_name}@{version_2}"

        # The worker polls the registry at its next batch (poll interval 0.5 s).
        ends = produce(settings, topic, [(s.key(), s.value()) for s in second])
        await run_until_applied(settings, db_pool, ends, worker)
        async with httpx.AsyncClient() as client:
            page = await client.get(f"http://127.0.0.1:{settings.processor_web_port}/metrics")

    assert metric(page.text, "learnstream_model_in_use", kind="dkt") == 1.0
    assert metric(page.text, "learnstream_model_fallbacks_total", reason="no_model") == 0.0
    assert metric(page.text, "learnstream_predictions_total", role="challenger") == len(second)
    busy_s = metric(page.text, "learnstream_processor_batch_seconds_sum", processor="predictions")
    log.info(
        "predictions worker: %d attempts (champion + challenger) in %.2f s of batches: "
        "%.0f attempts/s",
        len(specs),
        busy_s,
        len(specs) / busy_s,
    )

    served_2 = ModelTracer(registry.load_version(settings.ml_model_name, version_2, CPU), CPU)
    got = await stored_predictions(db_pool)
    # The new champion rebuilt each learner by replaying the stored attempts, so its
    # predictions are those of a replay of everything with model 2.
    expected = expected_predictions(served_2, specs, label_2)
    second_learners = {(s.tenant_id, s.user_id) for s in second}
    current = {k: v for k, v in got.items() if (k[0], k[1]) in second_learners}
    assert_close(
        current,
        {k: v for k, v in expected.items() if (k[0], k[1]) in second_learners},
        1e-5,
        "champion 2",
    )

    # Explanations: the learner's stored champion state, restored into model 2.
    last = second[-1]
    history = [s for s in specs if s.user_id == last.user_id]
    async with db_pool.acquire() as conn:
        evidence = await explain_prediction(
            conn, served_2, last.tenant_id, last.user_id, last.skill_ids[0], top_k=3
        )
    assert 0 < len(evidence) <= 3
    weights = [abs(e.weight) for e in evidence]
    assert weights == sorted(weights, reverse=True)
    for e in evidence:
        answered = history[len(history) - 1 - e.answers_ago]
        assert (e.skill_id, e.correct) == (answered.skill_ids[0], answered.correct)

    lines = await read_shadow_scores(db_pool)
    overall = {
        (line.key.model_version, line.key.role): line.cells
        for line in lines
        if line.key.subgroup_kind == "all"
    }
    assert set(overall) == {(label_1, "champion"), (label_2, "champion"), (label_1, "challenger")}
    # A learner's first attempt has no prediction to score; a new champion's predictions
    # start after its first attempt per learner; the challenger (model 1) continues from
    # the champion rows that model 1 wrote, so it scores every attempt after the switch.
    first_learners = {(s.tenant_id, s.user_id) for s in first}
    assert overall[(label_1, "champion")].n == len(first) - len(first_learners)
    assert overall[(label_2, "champion")].n == len(second) - len(second_learners)
    assert overall[(label_1, "challenger")].n == len(second)
    history_groups = {line.key.subgroup for line in lines if line.key.subgroup_kind == "history"}
    assert history_groups == {"short", "long"}
    for cells in overall.values():
        auc = cells.auc()
        assert auc is not None
        assert 0.0 <= auc <= 1.0
        assert math.isfinite(cells.log_loss_sum)
    report = format_shadow_report(lines)
    assert label_1 in report
    assert label_2 in report

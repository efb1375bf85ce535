"""Batched serving: per-learner state, batching changes nothing, BKT fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learnstream.settings import Settings
from ml.models import MODELS, ModelConfig, build_model
from ml.registry import LoadedModel
from ml.serving import AttemptInput, BKTTracer, ModelTracer, load_tracer
from scheduler import bkt

CPU = torch.device("cpu")
SKILLS = ("s1", "s2", "s3", "s4")


def _tracer(kind: str, window_length: int = 8, explain_top_k: int = 0) -> ModelTracer:
    torch.manual_seed(11)
    config = ModelConfig(
        kind=kind, num_skills=4, embedding_dim=8, hidden_dim=8, num_heads=2, max_length=8
    )
    model = build_model(config, CPU).eval()
    return ModelTracer(
        LoadedModel(model, SKILLS, window_length, "test@1"), CPU, explain_top_k=explain_top_k
    )


def _attempts() -> list[AttemptInput]:
    answers = [
        ("t:a", ("s1",), True),
        ("t:b", ("s2", "s3"), False),
        ("t:a", ("s2",), False),
        ("t:c", ("unknown-skill",), True),
        ("t:a", ("s1",), True),
        ("t:b", ("s4",), True),
    ]
    return [AttemptInput(learner, skills, correct) for learner, skills, correct in answers * 3]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_one_batched_call_equals_one_attempt_at_a_time(kind: str) -> None:
    attempts = _attempts()
    batched = _tracer(kind).observe(attempts)
    single_tracer = _tracer(kind)
    single = [single_tracer.observe([attempt])[0] for attempt in attempts]
    assert len(batched) == len(single) == len(attempts)
    for got, expected in zip(batched, single, strict=True):
        assert got.learner_id == expected.learner_id
        assert got.p_correct.keys() == expected.p_correct.keys()
        for skill, p in expected.p_correct.items():
            assert got.p_correct[skill] == pytest.approx(p, abs=1e-6)


def test_predictions_cover_every_skill_and_unknown_skills_are_skipped() -> None:
    results = _tracer("dkt_lstm").observe(_attempts()[:4])
    assert set(results[0].p_correct) == set(SKILLS)
    assert all(0.0 <= p <= 1.0 for p in results[0].p_correct.values())
    assert results[3].p_correct == {}  # learner c only answered a skill the model never saw
    assert results[0].source == "test@1"


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_explanation_points_into_the_learners_window(kind: str) -> None:
    tracer = _tracer(kind, window_length=4, explain_top_k=3)
    results = tracer.observe(_attempts())
    last_of_a = max(i for i, a in enumerate(_attempts()) if a.learner_id == "t:a")
    evidence = results[last_of_a].explanation
    assert 1 <= len(evidence) <= 3
    assert all(0 <= e.answers_ago < 4 for e in evidence)  # the window holds 4 answers
    assert all(e.skill_id in SKILLS for e in evidence)
    weights = [abs(e.weight) for e in evidence]
    assert weights == sorted(weights, reverse=True)
    assert results[0].explanation == ()  # not a's last attempt of the call


def test_bkt_tracer_follows_the_shared_update() -> None:
    params = bkt.BKTParams(prior=0.3, learn=0.2, guess=0.1, slip=0.1)
    tracer = BKTTracer(params_by_skill={"s1": params})
    (first, second) = tracer.observe(
        [AttemptInput("t:a", ("s1",), True), AttemptInput("t:a", ("s1",), True)]
    )
    mastery = bkt.update(params.prior, 1.0, params)
    assert first.p_correct["s1"] == pytest.approx(bkt.predict_correct(mastery, params))
    assert second.p_correct["s1"] > first.p_correct["s1"]
    assert first.source == "bkt"


def test_no_registered_model_falls_back_to_bkt(tmp_path: Path) -> None:
    tracer = load_tracer(Settings(data_dir=tmp_path, ml_model_name="never-trained"), CPU)
    assert isinstance(tracer, BKTTracer)
    (result,) = tracer.observe([AttemptInput("t:a", ("x",), False)])
    assert 0.0 <= result.p_correct["x"] <= 1.0


def test_an_evicted_learner_starts_afresh() -> None:
    tracer = _tracer("dkt_lstm")
    attempt = AttemptInput("t:a", ("s1",), True)
    (fresh,) = tracer.observe([attempt])
    (later,) = tracer.observe([attempt])
    tracer.evict(["t:a"])
    (again,) = tracer.observe([attempt])
    assert again.p_correct == pytest.approx(fresh.p_correct)
    assert later.p_correct != pytest.approx(fresh.p_correct)

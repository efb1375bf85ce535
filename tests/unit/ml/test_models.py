"""The registered models: they learn a pattern, and serving agrees with training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.datasets import cut_windows, iterate_batches
from ml.evaluate import predict_model
from ml.exceptions import UnknownNameError
from ml.metrics import score
from ml.models import MODELS, ModelConfig, build_model
from tests.unit.ml.synthetic import alternating_sequences

CPU = torch.device("cpu")
KINDS = sorted(MODELS)


def _tiny(kind: str, num_skills: int = 4, max_length: int = 12) -> ModelConfig:
    return ModelConfig(
        kind=kind,
        num_skills=num_skills,
        embedding_dim=16,
        hidden_dim=16,
        num_heads=2,
        dropout=0.0,
        max_length=max_length,
    )


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="dkt_lstm"):
        build_model(_tiny("nope"), CPU)


@pytest.mark.parametrize("kind", KINDS)
def test_model_overfits_a_tiny_pattern(kind: str) -> None:
    torch.manual_seed(0)
    windows = cut_windows(alternating_sequences(32, 12, 4), 12)
    model = build_model(_tiny(kind), CPU)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(60):
        for batch in iterate_batches(windows, 32, CPU):
            targets = batch.target_mask
            logits = model(batch.skills, batch.correct, batch.items)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits[targets], batch.correct[targets]
            )
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
            losses.append(float(loss.detach()))
    predicted = predict_model(model, windows, device=CPU)
    assert losses[-1] < 0.5 * losses[0]
    assert score(predicted.outcomes, predicted.p_correct).auc > 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_serving_step_by_step_equals_the_training_forward(kind: str) -> None:
    torch.manual_seed(1)
    model = build_model(_tiny(kind, num_skills=5, max_length=9), CPU).eval()
    rng = np.random.default_rng(2)
    skills = torch.from_numpy(rng.integers(0, 5, size=(3, 9)))
    correct = torch.from_numpy(rng.integers(0, 2, size=(3, 9))).float()
    with torch.no_grad():
        state = None
        for t in range(1, 9):
            lengths = torch.full((3,), t)
            served, state = model.serve(skills[:, :t], correct[:, :t], lengths, state)
            # The training forward's prediction for answer t (query = its skill) ...
            expected = model(skills[:, : t + 1], correct[:, : t + 1])[:, t]
            # ... equals serving's P(correct) for that skill after answers 0..t-1.
            got = served.gather(1, skills[:, t : t + 1]).squeeze(1)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_every_answer_is_predicted_from_the_answers_before_it_only(kind: str) -> None:
    torch.manual_seed(4)
    config = ModelConfig(**{**_tiny(kind, num_skills=5, max_length=8).to_dict(), "num_items": 6})
    model = build_model(config, CPU).eval()
    rng = np.random.default_rng(5)
    skills = torch.from_numpy(rng.integers(0, 5, size=(2, 8)))
    items = torch.from_numpy(rng.integers(0, 6, size=(2, 8)))
    correct = torch.from_numpy(rng.integers(0, 2, size=(2, 8))).float()
    with torch.no_grad():
        logits = model(skills, correct, items)
        assert logits.shape == (2, 8)
        assert torch.isfinite(logits).all()  # the first answer too (initial state)
        for t in range(8):
            flipped = correct.clone()
            flipped[:, t] = 1 - flipped[:, t]
            again = model(skills, flipped, items)
            # Answer t's own outcome never reaches its prediction (or earlier ones).
            torch.testing.assert_close(again[:, : t + 1], logits[:, : t + 1])
        one = model(skills[:, :1], correct[:, :1], items[:, :1])
        torch.testing.assert_close(one[:, 0], logits[:, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_explanation_covers_the_window_and_is_zero_at_padding(kind: str) -> None:
    torch.manual_seed(3)
    model = build_model(_tiny(kind, num_skills=5, max_length=6), CPU).eval()
    skills = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 1, 2, 0, 0, 0]])
    correct = torch.tensor([[1.0, 0, 1, 1, 0, 1], [0.0, 1, 1, 0, 0, 0]])
    lengths = torch.tensor([6, 3])
    weights = model.explain(skills, correct, lengths, torch.tensor([2, 2]))
    assert weights.shape == (2, 6)
    assert torch.all(weights[1, 3:] == 0)
    assert torch.any(weights[0] != 0)

"""Pure parts of the predictions processor: scores, subgroups, reload decision, restore."""

from __future__ import annotations

import math
import random

import torch

from ml.models import ModelConfig, build_model
from ml.prediction_state import SCORE_BINS, ScoreCells, ScoreKey, reload_needed
from ml.registry import LoadedModel
from ml.serving import AttemptInput, BKTTracer, ModelTracer
from processors.predictions import attempt_prediction, history_group, score_prediction, subgroups

CPU = torch.device("cpu")


def _pairwise_auc(scored: list[tuple[float, bool]]) -> float:
    """AUC by counting pairs, on predictions rounded down to the histogram grid."""
    binned = [(min(int(p * SCORE_BINS), SCORE_BINS - 1), c) for p, c in scored]
    positives = [b for b, c in binned if c]
    negatives = [b for b, c in binned if not c]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_histogram_auc_equals_pairwise_auc_on_the_grid() -> None:
    rng = random.Random(7)
    scored = [(rng.random(), rng.random() < 0.6) for _ in range(400)]
    cells = ScoreCells()
    for p, correct in scored:
        cells.add(p, correct)
    auc = cells.auc()
    assert auc is not None
    assert math.isclose(auc, _pairwise_auc(scored), rel_tol=1e-12)


def test_log_loss_is_the_mean_negative_log_likelihood() -> None:
    scored = [(0.9, True), (0.2, False), (0.7, False), (1.0, True), (0.0, True)]
    cells = ScoreCells()
    for p, correct in scored:
        cells.add(p, correct)
    expected = [
        -math.log(min(max(p, 1e-7), 1 - 1e-7) if c else 1 - min(max(p, 1e-7), 1 - 1e-7))
        for p, c in scored
    ]
    assert cells.n == len(scored)
    loss = cells.log_loss()
    assert loss is not None
    assert math.isclose(loss, sum(expected) / len(expected))


def test_auc_needs_both_outcomes_and_merge_adds_up() -> None:
    only_correct = ScoreCells()
    only_correct.add(0.4, True)
    assert only_correct.auc() is None
    assert ScoreCells().log_loss() is None

    rng = random.Random(3)
    scored = [(rng.random(), rng.random() < 0.5) for _ in range(200)]
    whole, first, second = ScoreCells(), ScoreCells(), ScoreCells()
    for number, (p, correct) in enumerate(scored):
        whole.add(p, correct)
        (first if number % 3 else second).add(p, correct)
    first.merge(second)
    assert (first.n, first.positive_bins, first.negative_bins) == (
        whole.n,
        whole.positive_bins,
        whole.negative_bins,
    )
    assert math.isclose(first.log_loss_sum, whole.log_loss_sum)


def test_a_model_that_ranks_perfectly_scores_auc_one() -> None:
    cells = ScoreCells()
    for p in (0.05, 0.1, 0.3):
        cells.add(p, False)
    for p in (0.6, 0.8, 0.99):
        cells.add(p, True)
    assert cells.auc() == 1.0


def test_history_groups_split_at_the_threshold() -> None:
    assert history_group(0, 10) == "short"
    assert history_group(9, 10) == "short"
    assert history_group(10, 10) == "long"
    cells = subgroups("t1", "question", 12, 10)
    assert cells == (
        ("all", "all"),
        ("tenant", "t1"),
        ("item_type", "question"),
        ("history", "long"),
    )


def test_score_prediction_counts_in_every_subgroup_of_its_model() -> None:
    board: dict[ScoreKey, ScoreCells] = {}
    for model, role in (("dkt@1", "champion"), ("dkt@2", "challenger")):
        score_prediction(
            board,
            model_version=model,
            role=role,
            cells=subgroups("t1", "video", 0, 5),
            p_correct=0.7,
            correct=True,
        )
    assert len(board) == 8
    assert {k.model_version for k in board} == {"dkt@1", "dkt@2"}
    assert all(c.n == 1 for c in board.values())


def test_reload_when_the_alias_moves_or_appears_or_goes() -> None:
    assert not reload_needed("3", "3")
    assert not reload_needed(None, None)  # BKT and still nothing registered
    assert reload_needed("3", "4")
    assert reload_needed(None, "1")  # first model registered
    assert reload_needed("2", None)  # alias removed: fall back


def test_attempt_prediction_averages_known_skills() -> None:
    p_next = {"a": 0.2, "b": 0.6}
    assert attempt_prediction(p_next, ("a", "b", "zzz")) == 0.4
    assert attempt_prediction(p_next, ("zzz",)) is None


def _tiny_tracer() -> ModelTracer:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="dkt_lstm", num_skills=3, hidden_dim=6), CPU)
    model.eval()
    return ModelTracer(LoadedModel(model, ("a", "b", "c"), 20, "tiny@1"), CPU)


def _attempts(learner: str, rng: random.Random, n: int) -> list[AttemptInput]:
    return [AttemptInput(learner, (rng.choice("abc"),), rng.random() < 0.5) for _ in range(n)]


def test_a_restored_recurrent_state_continues_like_an_uninterrupted_tracer() -> None:
    rng = random.Random(11)
    before, after = _attempts("t:u", rng, 7), _attempts("t:u", rng, 5)
    uninterrupted = _tiny_tracer()
    uninterrupted.observe(before)
    expected = uninterrupted.observe(after)

    first = _tiny_tracer()
    first.observe(before)
    saved = first.recurrent_state("t:u")
    assert saved is not None
    restarted = _tiny_tracer()
    restarted.restore("t:u", before, saved.clone())
    got = restarted.observe(after)
    for want, have in zip(expected, got, strict=True):
        assert want.p_correct.keys() == have.p_correct.keys()
        for skill, p in want.p_correct.items():
            assert math.isclose(p, have.p_correct[skill], abs_tol=1e-6)


def test_restore_without_state_replays_the_history() -> None:
    rng = random.Random(5)
    history, later = _attempts("t:v", rng, 6), _attempts("t:v", rng, 3)
    for make in (_tiny_tracer, BKTTracer):
        uninterrupted = make()
        uninterrupted.observe(history)
        expected = uninterrupted.observe(later)
        restored = make()
        restored.observe(_attempts("t:v", random.Random(99), 4))  # stale state, replaced
        restored.restore("t:v", history)
        got = restored.observe(later)
        assert [r.p_correct for r in got] == [r.p_correct for r in expected]

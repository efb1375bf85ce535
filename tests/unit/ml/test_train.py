"""Training progress and checkpoints: an interrupted run resumes to the same state."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.datasets import Window, cut_windows
from ml.exceptions import CheckpointError
from ml.models import ModelConfig
from ml.train import LAST_CHECKPOINT, EpochLog, TrainConfig, train
from tests.unit.ml.synthetic import alternating_sequences

CPU = torch.device("cpu")
# Dropout on, so the restored torch RNG matters too.
MODEL = ModelConfig(kind="dkt_lstm", num_skills=4, embedding_dim=8, hidden_dim=8, dropout=0.3)


def _windows() -> tuple[list[Window], list[Window]]:
    sequences = alternating_sequences(24, 10, 4)
    return cut_windows(sequences[:18], 10), cut_windows(sequences[18:], 10)


def test_resumed_run_ends_in_the_same_state_as_an_uninterrupted_one(tmp_path: Path) -> None:
    fit, validation = _windows()
    config = TrainConfig(epochs=3, batch_size=4, learning_rate=0.01, window_length=10, seed=5)
    straight = train(fit, validation, MODEL, config, device=CPU, checkpoint_dir=tmp_path / "a")

    interrupted = TrainConfig(**{**config.to_dict(), "epochs": 1})
    train(fit, validation, MODEL, interrupted, device=CPU, checkpoint_dir=tmp_path / "b")
    resumed = train(fit, validation, MODEL, config, device=CPU, checkpoint_dir=tmp_path / "b")

    assert resumed.resumed_from_epoch == 1
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in straight.history]
    assert resumed.best_epoch == straight.best_epoch
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    a = torch.load(tmp_path / "a" / LAST_CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "b" / LAST_CHECKPOINT, weights_only=True)
    assert torch.equal(a["torch_rng_state"], b["torch_rng_state"])
    assert a["optimizer_state"]["state"][0]["step"] == b["optimizer_state"]["state"][0]["step"]


def test_progress_is_reported_per_epoch_and_loss_falls(tmp_path: Path) -> None:
    fit, validation = _windows()
    seen: list[EpochLog] = []
    config = TrainConfig(epochs=4, batch_size=4, learning_rate=0.02, window_length=10)
    train(fit, validation, MODEL, config, device=CPU, checkpoint_dir=tmp_path, on_epoch=seen.append)
    assert [e.epoch for e in seen] == [1, 2, 3, 4]
    assert seen[-1].train_loss < seen[0].train_loss
    assert all(0.0 <= e.validation_auc <= 1.0 for e in seen)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path: Path) -> None:
    fit, validation = _windows()
    config = TrainConfig(epochs=1, batch_size=4, window_length=10)
    train(fit, validation, MODEL, config, device=CPU, checkpoint_dir=tmp_path)
    other = TrainConfig(epochs=2, batch_size=8, window_length=10)
    with pytest.raises(CheckpointError, match="another configuration"):
        train(fit, validation, MODEL, other, device=CPU, checkpoint_dir=tmp_path)

"""Training with per-epoch progress, resumable checkpoints and best-epoch selection.

One epoch: shuffle the training windows (seeded by ``(seed, epoch)``, so a resumed run
shuffles exactly as an uninterrupted one), minimise binary cross-entropy on the scored
targets with Adam, then score the validation windows (AUC and log-loss). Model
selection and early stopping (``patience`` epochs without a better validation AUC)
read the validation learners only; the test learners are never seen here. After every epoch the full
training state (model, optimizer, torch RNG, history) goes to ``<checkpoint_dir>/last.pt``
(written to a temporary name, then renamed) and the best epoch by validation AUC to
``best.pt``; a run started again with the same checkpoint folder continues where it
stopped and ends in the same state as an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.datasets import Window, iterate_batches
from ml.evaluate import predict_model
from ml.exceptions import CheckpointError
from ml.metrics import score
from ml.models import KnowledgeTracer, ModelConfig, build_model

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Optimisation settings; ``window_length`` is the number of answers per window."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    window_length: int = 200
    gradient_clip: float = 10.0  # max global gradient norm
    seed: int = 0
    patience: int = 0  # stop after this many epochs without a better validation AUC; 0 = off

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EpochLog:
    """One finished epoch: mean training loss (BCE, nats), AUCs, validation log-loss, seconds."""

    epoch: int  # 1-based
    train_loss: float
    train_auc: float
    validation_auc: float
    seconds: float
    validation_loss: float = float("nan")


@dataclass(slots=True)
class TrainResult:
    """The best model (by validation AUC, else the last) and the epoch history."""

    model: KnowledgeTracer
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    resumed_from_epoch: int = 0


def _save_atomically(payload: dict[str, Any], target: Path) -> None:
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    torch.save(payload, temporary)
    os.replace(temporary, target)


def _check_compatible(saved: dict[str, Any], model: ModelConfig, train: TrainConfig) -> None:
    # Epochs and patience only say when to stop: a run may be resumed with others.
    free = {"epochs", "patience"}
    saved_train = {k: v for k, v in saved["train_config"].items() if k not in free}
    wanted_train = {k: v for k, v in train.to_dict().items() if k not in free}
    if saved["model_config"] != model.to_dict() or saved_train != wanted_train:
        raise CheckpointError(
            "checkpoint was written with another configuration; use a new checkpoint folder "
            f"(saved {saved['model_config']} {saved['train_config']})"
        )


def train(
    train_windows: Sequence[Window],
    validation_windows: Sequence[Window],
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    device: torch.device,
    checkpoint_dir: Path,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train (or resume) a model; returns the best epoch's model in eval mode.

    ``checkpoint_dir`` holds this run's checkpoints; if it has a ``last.pt`` written
    with the same configurations, training resumes after its epoch (``epochs`` may be
    raised to train longer). With no validation windows the last epoch counts as best
    and there is no early stopping.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_model(model_config, device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    history: list[EpochLog] = []
    best_auc = -1.0
    best_epoch = 0
    start_epoch = 0
    last_path = checkpoint_dir / LAST_CHECKPOINT
    if last_path.exists():
        saved = torch.load(last_path, map_location=device, weights_only=True)
        _check_compatible(saved, model_config, config)
        model.load_state_dict(saved["model_state"])
        optimizer.load_state_dict(saved["optimizer_state"])
        torch.set_rng_state(saved["torch_rng_state"].cpu())
        history = [EpochLog(**entry) for entry in saved["history"]]
        best_auc, best_epoch, start_epoch = saved["best_auc"], saved["best_epoch"], saved["epoch"]
        log.info("resuming %s after epoch %d", checkpoint_dir, start_epoch)

    loss_function = nn.BCEWithLogitsLoss(reduction="sum")
    for epoch in range(start_epoch + 1, config.epochs + 1):
        if config.patience and validation_windows and epoch - best_epoch > config.patience:
            log.info("early stop: no better validation AUC since epoch %d", best_epoch)
            break
        started = time.perf_counter()
        model.train()
        rng = np.random.default_rng([config.seed, epoch])
        total_loss = 0.0
        total_targets = 0
        outcomes: list[np.ndarray[Any, Any]] = []
        probabilities: list[np.ndarray[Any, Any]] = []
        for batch in iterate_batches(train_windows, config.batch_size, device, rng):
            targets = batch.target_mask
            count = int(targets.sum())
            if count == 0:
                continue
            logits = model(batch.skills, batch.correct, batch.items)
            answers = batch.correct[targets]
            loss = loss_function(logits[targets], answers)
            objective = loss / count
            extra = model.regularization()
            if extra is not None:
                objective = objective + extra
            optimizer.zero_grad()
            objective.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
            optimizer.step()
            total_loss += float(loss.detach())
            total_targets += count
            outcomes.append(answers.detach().cpu().numpy())
            probabilities.append(torch.sigmoid(logits[targets]).detach().cpu().numpy())
        train_auc = (
            score(np.concatenate(outcomes), np.concatenate(probabilities)).auc
            if outcomes
            else float("nan")
        )
        validation_auc = validation_loss = float("nan")
        if validation_windows:
            predicted = predict_model(model, validation_windows, device=device)
            validation = score(predicted.outcomes, predicted.p_correct)
            validation_auc, validation_loss = validation.auc, validation.log_loss
        entry = EpochLog(
            epoch=epoch,
            train_loss=total_loss / max(total_targets, 1),
            train_auc=train_auc,
            validation_auc=validation_auc,
            seconds=time.perf_counter() - started,
            validation_loss=validation_loss,
        )
        history.append(entry)
        log.info(
            "epoch %d/%d loss %.4f train AUC %.4f validation AUC %.4f (%.1f s)",
            epoch,
            config.epochs,
            entry.train_loss,
            entry.train_auc,
            entry.validation_auc,
            entry.seconds,
        )
        if on_epoch is not None:
            on_epoch(entry)
        # Without validation data every epoch is "best", i.e. the last one wins.
        improved = not validation_windows or validation_auc > best_auc
        if improved:
            best_auc, best_epoch = validation_auc, epoch
            _save_atomically(
                {"model_config": model_config.to_dict(), "model_state": model.state_dict()},
                checkpoint_dir / BEST_CHECKPOINT,
            )
        _save_atomically(
            {
                "model_config": model_config.to_dict(),
                "train_config": config.to_dict(),
                "epoch": epoch,
                "model_state": model.state_dict(),
                "optimizer_state": optimizer.state_dict(),
                "torch_rng_state": torch.get_rng_state(),
                "history": [asdict(h) for h in history],
                "best_auc": best_auc,
                "best_epoch": best_epoch,
            },
            last_path,
        )

    best_path = checkpoint_dir / BEST_CHECKPOINT
    if best_path.exists():
        model.load_state_dict(
            torch.load(best_path, map_location=device, weights_only=True)["model_state"]
        )
    model.eval()
    return TrainResult(model, history, best_epoch, start_epoch)

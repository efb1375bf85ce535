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


@dataclass(slots=True)
class _Progress:
    """Where a run stands: epochs done, history and the best validation AUC so far."""

    history: list[EpochLog] = field(default_factory=list)
    best_auc: float = -1.0
    best_epoch: int = 0
    start_epoch: int = 0


def _resume(
    last_path: Path,
    model: KnowledgeTracer,
    optimizer: torch.optim.Optimizer,
    model_config: ModelConfig,
    config: TrainConfig,
    device: torch.device,
) -> _Progress:
    """Restore model, optimizer, torch RNG and progress from ``last.pt`` if there is one."""
    if not last_path.exists():
        return _Progress()
    saved = torch.load(last_path, map_location=device, weights_only=True)
    _check_compatible(saved, model_config, config)
    model.load_state_dict(saved["model_state"])
    optimizer.load_state_dict(saved["optimizer_state"])
    torch.set_rng_state(saved["torch_rng_state"].cpu())
    progress = _Progress(
        history=[EpochLog(**entry) for entry in saved["history"]],
        best_auc=saved["best_auc"],
        best_epoch=saved["best_epoch"],
        start_epoch=saved["epoch"],
    )
    log.info("resuming %s after epoch %d", last_path.parent, progress.start_epoch)
    return progress


def _train_epoch(
    model: KnowledgeTracer,
    optimizer: torch.optim.Optimizer,
    train_windows: Sequence[Window],
    config: TrainConfig,
    device: torch.device,
    epoch: int,
) -> tuple[float, float]:
    """One pass over the shuffled training windows: (mean BCE per target in nats, train AUC)."""
    loss_function = nn.BCEWithLogitsLoss(reduction="sum")
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
    return total_loss / max(total_targets, 1), train_auc


def _validate(
    model: KnowledgeTracer, validation_windows: Sequence[Window], device: torch.device
) -> tuple[float, float]:
    """(AUC, log-loss) on the validation windows; NaN for both when there are none."""
    if not validation_windows:
        return float("nan"), float("nan")
    predicted = predict_model(model, validation_windows, device=device)
    validation = score(predicted.outcomes, predicted.p_correct)
    return validation.auc, validation.log_loss


def _log_epoch(entry: EpochLog, epochs: int) -> None:
    log.info(
        "epoch %d/%d loss %.4f train AUC %.4f validation AUC %.4f (%.1f s)",
        entry.epoch,
        epochs,
        entry.train_loss,
        entry.train_auc,
        entry.validation_auc,
        entry.seconds,
    )


def _save_checkpoints(
    model: KnowledgeTracer,
    optimizer: torch.optim.Optimizer,
    model_config: ModelConfig,
    config: TrainConfig,
    progress: _Progress,
    *,
    epoch: int,
    improved: bool,
    checkpoint_dir: Path,
) -> None:
    """Write ``best.pt`` when the epoch improved, then always ``last.pt`` (atomically)."""
    if improved:
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
            "history": [asdict(h) for h in progress.history],
            "best_auc": progress.best_auc,
            "best_epoch": progress.best_epoch,
        },
        checkpoint_dir / LAST_CHECKPOINT,
    )


def _should_stop(
    config: TrainConfig, progress: _Progress, epoch: int, has_validation: bool
) -> bool:
    """Early stopping: ``patience`` epochs passed without a better validation AUC."""
    if config.patience and has_validation and epoch - progress.best_epoch > config.patience:
        log.info("early stop: no better validation AUC since epoch %d", progress.best_epoch)
        return True
    return False


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
    progress = _resume(
        checkpoint_dir / LAST_CHECKPOINT, model, optimizer, model_config, config, device
    )
    for epoch in range(progress.start_epoch + 1, config.epochs + 1):
        if _should_stop(config, progress, epoch, bool(validation_windows)):
            break
        started = time.perf_counter()
        train_loss, train_auc = _train_epoch(model, optimizer, train_windows, config, device, epoch)
        validation_auc, validation_loss = _validate(model, validation_windows, device)
        entry = EpochLog(
            epoch=epoch,
            train_loss=train_loss,
            train_auc=train_auc,
            validation_auc=validation_auc,
            seconds=time.perf_counter() - started,
            validation_loss=validation_loss,
        )
        progress.history.append(entry)
        _log_epoch(entry, config.epochs)
        if on_epoch is not None:
            on_epoch(entry)
        # Without validation data every epoch is "best", i.e. the last one wins.
        improved = not validation_windows or validation_auc > progress.best_auc
        if improved:
            progress.best_auc, progress.best_epoch = validation_auc, epoch
        _save_checkpoints(
            model,
            optimizer,
            model_config,
            config,
            progress,
            epoch=epoch,
            improved=improved,
            checkpoint_dir=checkpoint_dir,
        )

    best_path = checkpoint_dir / BEST_CHECKPOINT
    if best_path.exists():
        model.load_state_dict(
            torch.load(best_path, map_location=device, weights_only=True)["model_state"]
        )
    model.eval()
    return TrainResult(model, progress.history, progress.best_epoch, progress.start_epoch)

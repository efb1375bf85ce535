"""The tuned configurations (``ml/tuned.json``): read by the retrain DAG, written by tuning.

Kept free of heavy imports (no torch, no optuna) so the Airflow DAG file can read its
parameter defaults from it at parse time. ``python -m ml tune --write`` replaces a
model's entry; the file is committed, so a change of configuration is reviewed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TUNED_FILE = Path(__file__).resolve().parent / "tuned.json"


@dataclass(frozen=True, slots=True)
class TunedConfig:
    """A chosen configuration: model and optimiser settings plus where they came from."""

    model: dict[str, Any]  # ModelConfig fields except num_skills/num_items/max_length
    train: dict[str, Any]  # TrainConfig fields (learning_rate, batch_size, weight_decay)
    provenance: dict[str, Any] = field(default_factory=dict)  # study, dataset, AUC, trials


def load_tuned(kind: str, path: Path | None = None) -> TunedConfig | None:
    """The tuned configuration of model ``kind`` (from :data:`TUNED_FILE`), or ``None``."""
    path = path or TUNED_FILE
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(kind)
    if entry is None:
        return None
    return TunedConfig(entry["model"], entry["train"], entry.get("provenance", {}))


def save_tuned(kind: str, tuned: TunedConfig, path: Path | None = None) -> None:
    """Write (or replace) ``kind``'s entry in ``path``; other models' entries are kept."""
    path = path or TUNED_FILE
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[kind] = {"model": tuned.model, "train": tuned.train, "provenance": tuned.provenance}
    path.write_text(json.dumps(existing, indent=1, sort_keys=True) + "\n")


def tuned_values(kind: str, path: Path | None = None) -> dict[str, Any]:
    """Model and train settings of ``kind`` in one flat dict (empty when not tuned)."""
    tuned = load_tuned(kind, path)
    return {**tuned.model, **tuned.train} if tuned else {}

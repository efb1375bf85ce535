"""The model registry: a name → class dict (add a model by adding an entry)."""

from __future__ import annotations

import torch

from ml.exceptions import UnknownNameError
from ml.models.akt import AKT
from ml.models.base import KnowledgeTracer, ModelConfig
from ml.models.dkt import DKTLSTM
from ml.models.sakt import SAKT

MODELS: dict[str, type[KnowledgeTracer]] = {
    "akt": AKT,
    "dkt_lstm": DKTLSTM,
    "sakt": SAKT,
}


def build_model(config: ModelConfig, device: torch.device) -> KnowledgeTracer:
    """A fresh model of ``config.kind`` on ``device``; unknown kinds list the known ones."""
    model_class = MODELS.get(config.kind)
    if model_class is None:
        raise UnknownNameError(f"unknown model {config.kind!r}; known: {sorted(MODELS)}")
    return model_class(config).to(device)


__all__ = ["MODELS", "KnowledgeTracer", "ModelConfig", "build_model"]

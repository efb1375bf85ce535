"""What every knowledge-tracing model offers: training, serving and explanation.

A model sees answers as (skill index, item index, correct) triples and returns logits
of P(correct). Shapes: B learners (or windows), T positions, K skills. Item indices
are 0 where no item id is known; models that ignore items (DKT, SAKT) accept them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Hyper-parameters; ``kind`` is the registry name (``dkt_lstm``, ``sakt``, ``akt``)."""

    kind: str
    num_skills: int
    num_items: int = 1  # item indices in use, 0 = unknown included (1: skills only)
    embedding_dim: int = 100
    hidden_dim: int = 100
    num_layers: int = 1
    num_heads: int = 5
    dropout: float = 0.2  # in [0, 1)
    max_length: int = 200  # longest window a window model attends over

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        return cls(**values)


class KnowledgeTracer(nn.Module, ABC):
    """Base of the registered models.

    ``forward`` trains; ``serve`` answers "P(correct) on every skill now" for a batch
    of learners given their recent window and an optional per-learner state; ``explain``
    says how much each answer of the window mattered for one skill's prediction.
    """

    config: ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def interactions(self, skills: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """Index of (skill, correct) in [0, 2K): skill for wrong, skill + K for correct."""
        return skills + self.config.num_skills * correct.long()

    @abstractmethod
    def forward(
        self, skills: torch.Tensor, correct: torch.Tensor, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [B, T]: answer t (skill ``skills[:, t]``) is correct, given answers 0..t-1.

        ``skills`` [B, T] int64, ``correct`` [B, T] float (0/1), ``items`` [B, T] int64 or
        ``None`` (unknown). Logit 0 comes from the model's initial state; ``correct[:, t]``
        never influences logit t. Right padding is harmless: position t only depends on
        positions <= t.
        """

    def regularization(self) -> torch.Tensor | None:
        """An extra loss term added in training (e.g. AKT's Rasch L2), or ``None``."""
        return None

    @abstractmethod
    def serve(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [N, K] for every skill after each learner's newest answer, and the new state.

        ``skills``/``correct`` [N, W] hold each learner's most recent answers, newest at
        ``lengths - 1``; ``state`` is what the previous call returned for these learners
        (learner dimension first) or ``None`` for learners seen for the first time.
        Recurrent models read only the newest answer and the state; window models read
        the window and return ``None``.
        """

    @abstractmethod
    def explain(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        query_skills: torch.Tensor,
    ) -> torch.Tensor:
        """Relevance [N, W] of each answer in the window to the logit for ``query_skills`` [N].

        Zero at padding. Sign and scale are model-specific (gradient x input for the
        LSTM, attention weights in [0, 1] summing to 1 for attention models).
        """

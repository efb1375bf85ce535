"""What every knowledge-tracing model offers: training, serving and explanation.

A model sees answers as (skill index, correct) pairs and returns logits of
P(correct). Shapes: B learners (or windows), T positions, K skills.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Hyper-parameters; ``kind`` is the registry name (``dkt_lstm``, ``sakt``)."""

    kind: str
    num_skills: int
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
        self, skills: torch.Tensor, correct: torch.Tensor, query_skills: torch.Tensor
    ) -> torch.Tensor:
        """Logits [B, T]: answer t+1 on ``query_skills[:, t]`` is correct, given answers 0..t.

        ``skills`` [B, T] int64, ``correct`` [B, T] float (0/1), ``query_skills`` [B, T] int64.
        Right padding is harmless: position t only depends on positions <= t.
        """

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

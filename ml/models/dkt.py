"""Deep Knowledge Tracing with an LSTM (Piech et al., 2015).

Each answer is embedded as (skill, correct); an LSTM carries the learner's state and
a linear layer maps it to one logit per skill for the next answer.
"""

from __future__ import annotations

import torch
from torch import nn

from ml.models.base import KnowledgeTracer, ModelConfig


class DKTLSTM(KnowledgeTracer):
    """DKT; serving keeps each learner's (h, c) as state of shape [N, 2, layers, hidden]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        k = config.num_skills
        self.embedding = nn.Embedding(2 * k, config.embedding_dim)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_dim, k)

    def _skill_logits(self, embedded: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(embedded)
        logits: torch.Tensor = self.head(self.dropout(hidden))  # [B, T, K]
        return logits

    def forward(
        self, skills: torch.Tensor, correct: torch.Tensor, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, width = skills.shape
        hidden = skills.new_zeros((batch, 0, self.config.hidden_dim), dtype=torch.float32)
        if width > 1:
            embedded = self.embedding(self.interactions(skills[:, :-1], correct[:, :-1]))
            hidden, _ = self.lstm(embedded)
        # Answer 0 is read from the LSTM's initial (zero) state, as serving starts.
        initial = hidden.new_zeros(hidden.shape[0], 1, hidden.shape[2])
        logits: torch.Tensor = self.head(self.dropout(torch.cat([initial, hidden], dim=1)))
        return logits.gather(-1, skills.unsqueeze(-1)).squeeze(-1)

    def serve(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = torch.arange(skills.shape[0], device=skills.device)
        newest = self.interactions(skills[rows, lengths - 1], correct[rows, lengths - 1])
        embedded = self.embedding(newest).unsqueeze(1)  # [N, 1, E]
        if state is None:
            output, (h, c) = self.lstm(embedded)
        else:
            # [N, 2, layers, H] -> two [layers, N, H] tensors, as nn.LSTM wants them.
            h0 = state[:, 0].transpose(0, 1).contiguous()
            c0 = state[:, 1].transpose(0, 1).contiguous()
            output, (h, c) = self.lstm(embedded, (h0, c0))
        new_state = torch.stack([h.transpose(0, 1), c.transpose(0, 1)], dim=1)
        return self.head(output[:, -1]), new_state

    def explain(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        query_skills: torch.Tensor,
    ) -> torch.Tensor:
        # Gradient x input on the answer embeddings, the window re-run from an empty
        # state: answers older than the window count as unseen here.
        embedded = self.embedding(self.interactions(skills, correct)).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self._skill_logits(embedded)
            rows = torch.arange(skills.shape[0], device=skills.device)
            chosen = logits[rows, lengths - 1, query_skills]
            (gradient,) = torch.autograd.grad(chosen.sum(), embedded)
        relevance: torch.Tensor = (gradient * embedded).sum(-1).detach()
        positions = torch.arange(skills.shape[1], device=skills.device)
        inside: torch.Tensor = positions.unsqueeze(0) < lengths.unsqueeze(1)
        return relevance * inside

"""A Self-Attentive Knowledge Tracing model (Pandey & Karypis, 2019).

The skill asked next is the query; past answers, embedded as (skill, correct) plus
their position in the window, are keys and values. One attention block, a
feed-forward block, and a logit. The attention weights say which answers mattered.
"""

from __future__ import annotations

import torch
from torch import nn

from ml.models.base import KnowledgeTracer, ModelConfig


class SAKT(KnowledgeTracer):
    """SAKT; stateless in serving (reads the last ``max_length`` answers)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        k, e = config.num_skills, config.embedding_dim
        self.embedding = nn.Embedding(2 * k, e)
        self.question = nn.Embedding(k, e)
        self.position = nn.Embedding(config.max_length, e)
        # No dropout on the attention weights: on CPU, drawing the [B, heads, T, T] mask
        # took as long as the attention itself; dropout stays in the feed-forward block.
        self.attention = nn.MultiheadAttention(e, config.num_heads, dropout=0.0, batch_first=True)
        self.attention_norm = nn.LayerNorm(e)
        self.feed_forward = nn.Sequential(
            nn.Linear(e, config.hidden_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, e),
        )
        self.output_norm = nn.LayerNorm(e)
        self.head = nn.Linear(e, 1)

    def _keys(self, skills: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(skills.shape[1], device=skills.device)
        keys: torch.Tensor = self.embedding(self.interactions(skills, correct)) + self.position(
            positions
        )
        return keys

    def _block(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Returning the weights forces the slow attention path: only explain asks.
        attended, weights = self.attention(
            queries,
            keys,
            keys,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            average_attn_weights=True,
        )
        x = self.attention_norm(attended + queries)
        x = self.output_norm(x + self.feed_forward(x))
        return self.head(x).squeeze(-1), weights

    def forward(
        self, skills: torch.Tensor, correct: torch.Tensor, query_skills: torch.Tensor
    ) -> torch.Tensor:
        length = skills.shape[1]
        # Query t may look at answers 0..t only (True = not allowed).
        future = torch.triu(
            torch.ones(length, length, dtype=torch.bool, device=skills.device), diagonal=1
        )
        logits, _ = self._block(
            self.question(query_skills), self._keys(skills, correct), future, None
        )
        return logits

    def _padding(self, skills: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(skills.shape[1], device=skills.device)
        return positions.unsqueeze(0) >= lengths.unsqueeze(1)  # True = padding

    def serve(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        every_skill = self.question.weight.unsqueeze(0).expand(skills.shape[0], -1, -1)
        logits, _ = self._block(
            every_skill, self._keys(skills, correct), None, self._padding(skills, lengths)
        )
        return logits, None

    def explain(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        query_skills: torch.Tensor,
    ) -> torch.Tensor:
        queries = self.question(query_skills).unsqueeze(1)  # [N, 1, E]
        _, weights = self._block(
            queries, self._keys(skills, correct), None, self._padding(skills, lengths), True
        )
        assert weights is not None  # asked for above
        return weights.squeeze(1).detach()

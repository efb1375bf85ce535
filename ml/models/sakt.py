"""A Self-Attentive Knowledge Tracing model (Pandey & Karypis, 2019).

The skill asked next is the query; past answers, embedded as (skill, correct) plus
their position in the window, are keys and values. A learned "start" key stands
before the first answer, so the first answer of a window is predicted too (it can
only attend to the start key: the model's initial state). One attention block, a
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
        # Key 0 is the start key, key j the answer j - 1: max_length + 1 positions.
        self.position = nn.Embedding(config.max_length + 1, e)
        self.start = nn.Parameter(torch.zeros(1, 1, e))
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
        """[B, 1 + W, E]: the start key, then the W answers, each plus its position."""
        answers = self.embedding(self.interactions(skills, correct))
        keys = torch.cat([self.start.expand(skills.shape[0], -1, -1), answers], dim=1)
        positions = torch.arange(keys.shape[1], device=skills.device)
        result: torch.Tensor = keys + self.position(positions)
        return result

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
        self, skills: torch.Tensor, correct: torch.Tensor, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        length = skills.shape[1]
        # Query t may look at keys 0..t: the start key and answers 0..t-1 (True = not allowed).
        future = torch.triu(
            torch.ones(length, length, dtype=torch.bool, device=skills.device), diagonal=1
        )
        keys = self._keys(skills[:, :-1], correct[:, :-1])
        logits, _ = self._block(self.question(skills), keys, future, None)
        return logits

    def _padding(self, skills: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Over the start key and the W answers: True = padding.
        positions = torch.arange(skills.shape[1] + 1, device=skills.device)
        return positions.unsqueeze(0) > lengths.unsqueeze(1)

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
        return weights.squeeze(1)[:, 1:].detach()  # the start key is not an answer

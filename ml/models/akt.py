"""Attentive Knowledge Tracing (Ghosh, Heffernan & Lan, KDD 2020).

* **Rasch-model embeddings.** Question q of skill s is ``x = c_s + mu_q * d_s``; the
  answer r to it is ``y = e_(s,r) + mu_q * f_(s,r)``; ``mu_q`` is one learned scalar
  (the item's difficulty, L2-regularised). Item index 0 ("unknown") has ``mu = 0``,
  so on skill-only data AKT reduces to its no-Rasch variant.
* **Monotonic attention.** Attention scores decay with the "context-aware distance"
  between two positions, ``exp(-softplus(theta) * sqrt(distance))`` per head, where
  the distance counts how much attention lies between them.
* **Three encoders.** A knowledge encoder over the answers (each position sees itself
  and the past), a question encoder over the questions, and a knowledge retriever:
  question t attends over earlier questions and reads the encoded answers ``0..t-1``;
  question 0 reads nothing (a zero knowledge state, the model's initial state). The
  retrieved state and the question embedding go through an MLP to one logit.

Sizes from :class:`ModelConfig`: ``embedding_dim`` = d_model, ``num_heads`` heads,
``hidden_dim`` the feed-forward and output width, ``num_layers`` blocks per encoder.
Follows the authors' and pyKT's reference implementation; the code is our own.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from ml.models.base import KnowledgeTracer, ModelConfig

RASCH_L2 = 1e-5  # weight of sum(mu_q^2) in the training loss, as in the paper
SERVE_CHUNK = 256  # sequences per forward pass when scoring every skill in serving


def _allowed(length: int, *, include_self: bool, device: torch.device) -> torch.Tensor:
    """[T, T] bool: True where position t may attend to position tau."""
    return torch.tril(
        torch.ones(length, length, dtype=torch.bool, device=device),
        diagonal=0 if include_self else -1,
    )


class MonotonicAttention(nn.Module):
    """Multi-head attention with AKT's distance decay; keys and queries share weights."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"embedding_dim {d_model} is not a multiple of num_heads {heads}")
        self.heads, self.d_k = heads, d_model // heads
        self.query_key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.gammas = nn.Parameter(torch.empty(heads, 1, 1))
        nn.init.xavier_uniform_(self.gammas)
        self.last_weights: torch.Tensor | None = None  # [B, heads, T, T], for explanations

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.d_k).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        q, k = self._split(self.query_key(query)), self._split(self.query_key(key))
        v = self._split(self.value(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # [B, h, T, T]
        length = scores.shape[-1]
        with torch.no_grad():
            # Context-aware distance: |t - tau| times the attention mass after tau.
            weights = torch.softmax(scores.masked_fill(~allowed, -1e32), dim=-1) * allowed
            after = weights.sum(-1, keepdim=True) - weights.cumsum(-1)
            positions = torch.arange(length, device=scores.device)
            gap = (positions.unsqueeze(0) - positions.unsqueeze(1)).abs()
            distance = torch.clamp(after * gap, min=0.0).sqrt()
        gamma = -functional.softplus(self.gammas).unsqueeze(0)
        decay = torch.clamp(torch.exp(distance * gamma), min=1e-5, max=1e5)
        weights = torch.softmax((scores * decay).masked_fill(~allowed, -1e32), dim=-1)
        # A row with nothing allowed (question 0 in the retriever) reads nothing.
        weights = weights * allowed.any(-1, keepdim=True)
        self.last_weights = weights.detach()
        attended = self.dropout(weights) @ v
        batch = attended.shape[0]
        merged = attended.transpose(1, 2).reshape(batch, length, self.heads * self.d_k)
        result: torch.Tensor = self.out(merged)
        return result


class AKTLayer(nn.Module):
    """Attention + residual + norm, then (optionally) a feed-forward block."""

    def __init__(self, config: ModelConfig, *, feed_forward: bool) -> None:
        super().__init__()
        d = config.embedding_dim
        self.attention = MonotonicAttention(d, config.num_heads, config.dropout)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.feed_forward = (
            nn.Sequential(
                nn.Linear(d, config.hidden_dim),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden_dim, d),
                nn.Dropout(config.dropout),
            )
            if feed_forward
            else None
        )
        self.output_norm = nn.LayerNorm(d) if feed_forward else None

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        x: torch.Tensor = self.norm(
            query + self.dropout(self.attention(query, key, value, allowed))
        )
        if self.feed_forward is not None and self.output_norm is not None:
            x = self.output_norm(x + self.feed_forward(x))
        return x


class AKT(KnowledgeTracer):
    """AKT; stateless in serving (reads the window, like SAKT)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        k, d = config.num_skills, config.embedding_dim
        self.question = nn.Embedding(k, d)  # c_s
        self.answer = nn.Embedding(2 * k, d)  # e_(s,r)
        self.question_variation = nn.Embedding(k, d)  # d_s
        self.answer_variation = nn.Embedding(2 * k, d)  # f_(s,r)
        # mu_q; index 0 (unknown item) stays 0 because it is the padding index.
        self.difficulty = nn.Embedding(max(config.num_items, 1), 1, padding_idx=0)
        nn.init.zeros_(self.difficulty.weight)
        blocks = max(config.num_layers, 1)
        self.knowledge_encoder = nn.ModuleList(
            AKTLayer(config, feed_forward=True) for _ in range(blocks)
        )
        self.question_encoder = nn.ModuleList(
            AKTLayer(config, feed_forward=False) for _ in range(blocks)
        )
        self.retriever = nn.ModuleList(AKTLayer(config, feed_forward=True) for _ in range(blocks))
        width = config.hidden_dim
        self.head = nn.Sequential(
            nn.Linear(2 * d, width),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(width, max(width // 2, 1)),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(max(width // 2, 1), 1),
        )

    def forward(
        self, skills: torch.Tensor, correct: torch.Tensor, items: torch.Tensor | None = None
    ) -> torch.Tensor:
        if items is None:
            items = torch.zeros_like(skills)
        # Items this model never saw (another item vocabulary) count as unknown.
        items = torch.where(items < self.difficulty.num_embeddings, items, 0)
        mu = self.difficulty(items)  # [B, T, 1]
        pairs = self.interactions(skills, correct)
        x = self.question(skills) + mu * self.question_variation(skills)
        y = self.answer(pairs) + mu * self.answer_variation(pairs)
        length, device = skills.shape[1], skills.device
        up_to_now = _allowed(length, include_self=True, device=device)
        strictly_before = _allowed(length, include_self=False, device=device)
        question_embedding = x
        for layer in self.knowledge_encoder:
            y = layer(y, y, y, up_to_now)
        for question_layer, retriever_layer in zip(
            self.question_encoder, self.retriever, strict=True
        ):
            x = question_layer(x, x, x, up_to_now)
            x = retriever_layer(x, x, y, strictly_before)
        logits: torch.Tensor = self.head(torch.cat([x, question_embedding], dim=-1)).squeeze(-1)
        return logits

    def regularization(self) -> torch.Tensor:
        return RASCH_L2 * (self.difficulty.weight**2).sum()

    def _with_queries(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        query: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows with the query skill written at position ``lengths`` (one column added)."""
        rows = torch.arange(skills.shape[0], device=skills.device)
        extended = functional.pad(skills, (0, 1))
        extended[rows, lengths] = query
        return extended, functional.pad(correct, (0, 1))

    def serve(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        state: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Every skill asked as the next question of an item of average difficulty.
        n, k = skills.shape[0], self.config.num_skills
        every = torch.arange(k, device=skills.device).repeat(n)
        window = skills.repeat_interleave(k, dim=0)
        answers = correct.repeat_interleave(k, dim=0)
        at = lengths.repeat_interleave(k)
        logits: list[torch.Tensor] = []
        for start in range(0, n * k, SERVE_CHUNK):
            part = slice(start, start + SERVE_CHUNK)
            extended, flags = self._with_queries(window[part], answers[part], at[part], every[part])
            rows = torch.arange(extended.shape[0], device=skills.device)
            logits.append(self.forward(extended, flags)[rows, at[part]])
        return torch.cat(logits).view(n, k), None

    def explain(
        self,
        skills: torch.Tensor,
        correct: torch.Tensor,
        lengths: torch.Tensor,
        query_skills: torch.Tensor,
    ) -> torch.Tensor:
        extended, flags = self._with_queries(skills, correct, lengths, query_skills)
        self.forward(extended, flags)
        last = self.retriever[-1]
        assert isinstance(last, AKTLayer)
        weights = last.attention.last_weights
        assert weights is not None  # set by the forward pass above
        rows = torch.arange(skills.shape[0], device=skills.device)
        # The query's row of the last retriever, averaged over heads, over the W answers.
        return weights.mean(1)[rows, lengths][:, : skills.shape[1]]

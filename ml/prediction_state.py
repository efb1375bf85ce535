"""The predictions processor's stored state, read back: rows, explanations, shadow scores.

:mod:`processors.predictions` serves the registry's champion (and a challenger in
shadow) on attempts and stores, per learner and role, its state in
``prediction_learner_state`` and its running scores in ``model_shadow_scores``. This
module is the one place that knows those rows' shape, so the worker writes and the
read side reads the same thing without the read side importing a worker:

* :func:`state_row`, :func:`encode_tensor` / :func:`decode_tensor`: a
  ``prediction_learner_state`` row and its recurrent state (``.npy`` bytes);
* :func:`explain_prediction`: the champion restored from the learner's stored state
  says which recent attempts mattered most (read API: ``api/services/predictions.py``);
* :class:`ScoreCells`, :func:`read_shadow_scores`, :func:`shadow_report`: champion
  against challenger (``python -m ml shadow-report``);
* :func:`reload_needed`: whether a registry alias moved since a model was loaded.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg
import numpy as np
import torch

from learnstream import db
from learnstream.settings import Settings
from ml.serving import AttemptInput, BKTTracer, Evidence, ModelTracer

CHAMPION_ROLE = "champion"
CHALLENGER_ROLE = "challenger"
BKT_LABEL = "bkt"  # model_version of rows written by the BKT fallback
SCORE_BINS = 100  # equal-width P(correct) bins of the AUC histograms
# log-loss of a prediction of exactly 0 or 1 would be infinite.
_EPSILON = 1e-7


def reload_needed(loaded_version: str | None, registered_version: str | None) -> bool:
    """True when the alias now names another version than the one served.

    ``None`` on either side means "none": no model served (BKT) or no alias set.
    """
    return loaded_version != registered_version


@dataclass(slots=True)
class ScoreCells:
    """Running score of one model on one subgroup: count, log-loss sum, AUC histograms."""

    n: int = 0
    log_loss_sum: float = 0.0
    positive_bins: list[int] = field(default_factory=lambda: [0] * SCORE_BINS)
    negative_bins: list[int] = field(default_factory=lambda: [0] * SCORE_BINS)

    def add(self, p_correct: float, correct: bool) -> None:
        """Score one prediction ``p_correct`` in [0, 1] against the outcome."""
        p = min(max(p_correct, _EPSILON), 1.0 - _EPSILON)
        self.n += 1
        self.log_loss_sum += -math.log(p if correct else 1.0 - p)
        index = min(int(p_correct * SCORE_BINS), SCORE_BINS - 1)
        (self.positive_bins if correct else self.negative_bins)[index] += 1

    def merge(self, other: ScoreCells) -> None:
        """Add ``other``'s counts to these."""
        self.n += other.n
        self.log_loss_sum += other.log_loss_sum
        for i in range(SCORE_BINS):
            self.positive_bins[i] += other.positive_bins[i]
            self.negative_bins[i] += other.negative_bins[i]

    def log_loss(self) -> float | None:
        """Mean log-loss in nats, or None before any prediction."""
        return self.log_loss_sum / self.n if self.n else None

    def auc(self) -> float | None:
        """AUC in [0, 1] from the histograms (pairs within one bin count half).

        None when only one outcome was seen. Bins are 1/SCORE_BINS wide, so this is the
        exact AUC of predictions rounded down to that grid.
        """
        positives, negatives = sum(self.positive_bins), sum(self.negative_bins)
        if not positives or not negatives:
            return None
        below = 0
        wins = 0.0
        for pos, neg in zip(self.positive_bins, self.negative_bins, strict=True):
            wins += pos * (below + 0.5 * neg)
            below += neg
        return wins / (positives * negatives)


class ScoreKey(NamedTuple):
    """One row of model_shadow_scores."""

    model_version: str
    role: str
    subgroup_kind: str
    subgroup: str


def learner_id(tenant_id: str, user_id: str) -> str:
    """The tracer's learner id, ``tenant:user``."""
    return f"{tenant_id}:{user_id}"


@dataclass(frozen=True, slots=True)
class StateRow:
    """One prediction_learner_state row."""

    model_version: str
    answers_seen: int
    history: tuple[AttemptInput, ...]
    recurrent: bytes | None
    p_next: dict[str, float]


def encode_tensor(tensor: torch.Tensor | None) -> bytes | None:
    if tensor is None:
        return None
    # .npy (shape, dtype, raw floats): several times faster than torch.save, no pickle.
    buffer = io.BytesIO()
    np.save(buffer, tensor.detach().cpu().numpy(), allow_pickle=False)
    return buffer.getvalue()


def decode_tensor(raw: bytes) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(raw), allow_pickle=False))


def state_row(record: asyncpg.Record) -> StateRow:
    learner = learner_id(record["tenant_id"], record["user_id"])
    history = tuple(
        AttemptInput(learner, tuple(skills), bool(correct))
        for skills, correct in json.loads(record["history"])
    )
    return StateRow(
        model_version=record["model_version"],
        answers_seen=int(record["answers_seen"]),
        history=history,
        recurrent=record["recurrent"],
        p_next={k: float(v) for k, v in json.loads(record["p_next"]).items()},
    )


async def explain_prediction(
    conn: asyncpg.Connection,
    tracer: ModelTracer | BKTTracer,
    tenant_id: str,
    user_id: str,
    skill_id: str,
    *,
    top_k: int = 5,
) -> tuple[Evidence, ...]:
    """Which of the learner's recent attempts mattered most for P(correct) on ``skill_id``.

    ``tracer`` is the champion (e.g. ``ml.serving.load_tracer``); the learner is
    restored into it from the committed champion state. Largest weight magnitude
    first, at most ``top_k``; empty for BKT, an unknown learner or an unknown skill.
    """
    record = await conn.fetchrow(
        "SELECT tenant_id, user_id, model_version, answers_seen, history::text AS history, "
        "recurrent, p_next::text AS p_next FROM prediction_learner_state "
        "WHERE tenant_id = $1 AND user_id = $2 AND role = $3",
        tenant_id,
        user_id,
        CHAMPION_ROLE,
    )
    if record is None:
        return ()
    row = state_row(record)
    learner = learner_id(tenant_id, user_id)
    label = tracer.loaded.label if isinstance(tracer, ModelTracer) else BKT_LABEL
    recurrent = (
        decode_tensor(row.recurrent)
        if row.recurrent is not None and row.model_version == label
        else None
    )
    tracer.restore(learner, row.history, recurrent)
    return tracer.explain(learner, skill_id, top_k)


@dataclass(frozen=True, slots=True)
class ShadowLine:
    """One model's score on one subgroup."""

    key: ScoreKey
    cells: ScoreCells


async def read_shadow_scores(conn: asyncpg.Connection) -> list[ShadowLine]:
    """Every model_shadow_scores row, ordered by subgroup then role (champion first)."""
    records = await conn.fetch(
        "SELECT model_version, role, subgroup_kind, subgroup, n, log_loss_sum, positive_bins, "
        "negative_bins FROM model_shadow_scores ORDER BY subgroup_kind, subgroup, role, "
        "model_version"
    )
    return [
        ShadowLine(
            ScoreKey(r["model_version"], r["role"], r["subgroup_kind"], r["subgroup"]),
            ScoreCells(
                int(r["n"]),
                float(r["log_loss_sum"]),
                list(r["positive_bins"]),
                list(r["negative_bins"]),
            ),
        )
        for r in records
    ]


def format_shadow_report(lines: Sequence[ShadowLine]) -> str:
    """A text table: per subgroup, each model's n, mean log-loss and AUC."""
    header = f"{'subgroup':<28} {'role':<10} {'model':<16} {'n':>8} {'logloss':>8} {'auc':>7}"
    out = [header, "-" * len(header)]
    for line in lines:
        k, c = line.key, line.cells
        loss, auc = c.log_loss(), c.auc()
        out.append(
            f"{k.subgroup_kind + '=' + k.subgroup:<28} {k.role:<10} {k.model_version:<16} "
            f"{c.n:>8} {'-' if loss is None else f'{loss:.4f}':>8} "
            f"{'-' if auc is None else f'{auc:.4f}':>7}"
        )
    return "\n".join(out)


async def shadow_report(settings: Settings) -> str:
    """The shadow-scoring table of the configured database (``python -m ml shadow-report``)."""
    conn = await db.connect(settings)
    try:
        lines = await read_shadow_scores(conn)
    except asyncpg.UndefinedTableError:
        return "model_shadow_scores does not exist yet: run `make services` (it migrates)"
    finally:
        await conn.close()
    if not lines:
        return "no predictions scored yet (is `python -m processors predictions` running?)"
    return format_shadow_report(lines)

"""The predictions processor: attempts in, each learner's P(correct) per skill out.

For every AttemptEvent the registry's champion (:mod:`ml.registry`, alias
``champion`` of ``settings.ml_model_name``) is fed the attempt through
:class:`ml.serving.ModelTracer`, batched per Faust batch (one model step per round of
"every learner's next attempt"), and ``skill_predictions`` gets the learner's
P(correct) on every skill the model knows after their latest attempt of the batch.
With no model registered, or when loading or inference fails, the champion is
:class:`ml.serving.BKTTracer` (default parameters, skills the learner answered);
``learnstream_model_in_use{kind}`` and ``learnstream_model_fallbacks_total{reason}``
say so. The registry is polled every ``predictions_registry_poll_s`` seconds and a
model whose alias moved is reloaded (:func:`ml.prediction_state.reload_needed`).

State and exactly-once. A learner's recurrent state (DKT) or window lives in the
tracer's memory, but every batch also writes it to ``prediction_learner_state``
(model version, attempts applied so far, last ``predictions_history_length`` attempts,
recurrent state, next-attempt predictions) in the batch's transaction. Memory is
only a cache: at the start of a batch the learners' rows are read (and locked), and
a learner whose in-memory marker (model version, attempts applied) differs from its
row is restored from the row: the stored recurrent state when the model is the same,
else a replay of the stored attempts. A restart, a rebalance, a rolled-back batch or a
retry therefore continue from exactly the committed state, and a ``kill -9`` run
ends with the same ``skill_predictions`` as an uninterrupted one (up to float
rounding of differently-sized batches). The ``attempts`` table of learner_state is
not used: it is written by another consumer group and may be ahead or behind.

Shadow scoring. With ``predictions_shadow`` the ``challenger`` alias (if any) is
served next to the champion, with its own state rows. Before each attempt, each
model's prediction for that attempt (mean P(correct) over its skills the model
knows) is scored against the outcome: ``model_shadow_scores`` keeps per model and
subgroup (all, tenant, item type from ``content_items.kind``, short/long history)
the count, the log-loss sum and histograms of P(correct) for correct and wrong
outcomes, from which AUC follows (:class:`ml.prediction_state.ScoreCells`).
``python -m ml shadow-report`` prints champion against challenger.

The rows' shape is :mod:`ml.prediction_state`'s, which also reads them back for the
read API and the CLI. Explanations are computed there on demand
(:func:`ml.prediction_state.explain_prediction`): the champion restored from the
learner's stored state says which of the recent attempts mattered most (gradient x
input for DKT, attention for SAKT, none for BKT). Computing them for every
prediction would cost one backward pass per learner-skill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import torch
from prometheus_client import Counter, Gauge

from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from ml.prediction_state import (
    BKT_LABEL,
    CHALLENGER_ROLE,
    CHAMPION_ROLE,
    ScoreCells,
    ScoreKey,
    StateRow,
    decode_tensor,
    encode_tensor,
    learner_id,
    reload_needed,
    state_row,
)
from ml.serving import AttemptInput, BKTTracer, ModelTracer
from processors.base import Decoded, Flow
from processors.events import Attempt, decode_attempt
from processors.offsets import SourceRecord

if TYPE_CHECKING:
    from ml.registry import ModelRegistry

log = logging.getLogger(__name__)

# Learner states kept in memory (per role) before all are dropped; rows rebuild them.
MAX_CACHED_LEARNERS = 200_000

MODEL_IN_USE = Gauge(
    "learnstream_model_in_use",
    "1 for the kind of model the predictions processor serves as champion: dkt (a "
    "registered model) or bkt (the fallback), 0 for the other",
    ["processor", "kind"],
)
FALLBACKS = Counter(
    "learnstream_model_fallbacks_total",
    "Times the predictions processor fell back to BKT: no_model (nothing registered), "
    "load_error (registry or artifact unreadable), inference_error (a batch failed)",
    ["processor", "reason"],
)
PREDICTIONS = Counter(
    "learnstream_predictions_total",
    "Attempts served, by role (champion, challenger)",
    ["processor", "role"],
)

_LOAD_STATES = """
    SELECT s.tenant_id, s.user_id, s.role, s.model_version, s.answers_seen,
           s.history::text AS history, s.recurrent, s.p_next::text AS p_next
    FROM prediction_learner_state AS s
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON s.tenant_id = wanted.tenant_id AND s.user_id = wanted.user_id
    ORDER BY s.tenant_id, s.user_id, s.role
    FOR UPDATE OF s
"""
_UPSERT_STATES = """
    INSERT INTO prediction_learner_state AS s (tenant_id, user_id, role, model_version,
        answers_seen, history, recurrent, p_next, updated_at)
    SELECT r.tenant_id, r.user_id, r.role, r.model_version, r.answers_seen,
           r.history::jsonb, r.recurrent, r.p_next::jsonb, now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                $7::bytea[], $8::text[])
      AS r(tenant_id, user_id, role, model_version, answers_seen, history, recurrent, p_next)
    ON CONFLICT (tenant_id, user_id, role) DO UPDATE SET
        model_version = EXCLUDED.model_version,
        answers_seen = EXCLUDED.answers_seen,
        history = EXCLUDED.history,
        recurrent = EXCLUDED.recurrent,
        p_next = EXCLUDED.p_next,
        updated_at = EXCLUDED.updated_at
"""
_UPSERT_PREDICTIONS = """
    INSERT INTO skill_predictions (tenant_id, user_id, skill_id, p_correct, model_version,
                                   updated_at)
    SELECT r.tenant_id, r.user_id, r.skill_id, r.p_correct, r.model_version, now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[])
      AS r(tenant_id, user_id, skill_id, p_correct, model_version)
    ON CONFLICT (tenant_id, user_id, skill_id) DO UPDATE SET
        p_correct = EXCLUDED.p_correct,
        model_version = EXCLUDED.model_version,
        updated_at = EXCLUDED.updated_at
"""
_UPSERT_SCORES = """
    INSERT INTO model_shadow_scores AS s (model_version, role, subgroup_kind, subgroup, n,
        log_loss_sum, positive_bins, negative_bins, updated_at)
    SELECT r.model_version, r.role, r.subgroup_kind, r.subgroup, r.n, r.log_loss_sum,
           r.positive_bins::bigint[], r.negative_bins::bigint[], now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::float8[],
                $7::text[], $8::text[])
      AS r(model_version, role, subgroup_kind, subgroup, n, log_loss_sum, positive_bins,
           negative_bins)
    ON CONFLICT (model_version, role, subgroup_kind, subgroup) DO UPDATE SET
        n = s.n + EXCLUDED.n,
        log_loss_sum = s.log_loss_sum + EXCLUDED.log_loss_sum,
        positive_bins = ARRAY(SELECT a + b FROM unnest(s.positive_bins, EXCLUDED.positive_bins)
                              AS t(a, b)),
        negative_bins = ARRAY(SELECT a + b FROM unnest(s.negative_bins, EXCLUDED.negative_bins)
                              AS t(a, b)),
        updated_at = EXCLUDED.updated_at
"""
_ITEM_TYPES = """
    SELECT c.tenant_id, c.item_id, c.kind
    FROM content_items AS c
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, item_id)
      ON c.tenant_id = wanted.tenant_id AND c.item_id = wanted.item_id
"""


# --- pure parts -------------------------------------------------------------------


def history_group(answers_before: int, short_history: int) -> str:
    """``short`` for a learner with fewer than ``short_history`` earlier attempts, else ``long``."""
    return "short" if answers_before < short_history else "long"


def subgroups(
    tenant_id: str, item_type: str, answers_before: int, short_history: int
) -> tuple[tuple[str, str], ...]:
    """The (subgroup kind, subgroup) cells one scored prediction counts in."""
    return (
        ("all", "all"),
        ("tenant", tenant_id),
        ("item_type", item_type),
        ("history", history_group(answers_before, short_history)),
    )


def score_prediction(
    board: dict[ScoreKey, ScoreCells],
    *,
    model_version: str,
    role: str,
    cells: Iterable[tuple[str, str]],
    p_correct: float,
    correct: bool,
) -> None:
    """Count one prediction in every subgroup cell of ``board``."""
    for kind, subgroup in cells:
        key = ScoreKey(model_version, role, kind, subgroup)
        board.setdefault(key, ScoreCells()).add(p_correct, correct)


def attempt_prediction(p_next: Mapping[str, float], skill_ids: Sequence[str]) -> float | None:
    """A model's P(correct) for an attempt: the mean over its skills the model predicts."""
    known = [p_next[s] for s in skill_ids if s in p_next]
    return sum(known) / len(known) if known else None


# --- serving ----------------------------------------------------------------------


@dataclass(slots=True)
class Served:
    """One model served under a role."""

    role: str
    tracer: ModelTracer | BKTTracer
    version: str | None  # registry version; None for the BKT fallback
    label: str  # what rows record as model_version: "dkt@3" or "bkt"

    @property
    def kind(self) -> str:
        return "bkt" if isinstance(self.tracer, BKTTracer) else "dkt"


def _row_for(rows: Mapping[tuple[str, str], StateRow], learner: str, role: str) -> StateRow | None:
    """The learner's row for ``role``, else the other role's (a new challenger starts
    from the attempts the champion saw, replayed)."""
    other = CHALLENGER_ROLE if role == CHAMPION_ROLE else CHAMPION_ROLE
    return rows.get((learner, role)) or rows.get((learner, other))


class PredictionsProcessor:
    """Serves the champion (and the challenger in shadow) on attempts; see the module doc."""

    flow = Flow(
        reads=(Stream.ATTEMPTS,),
        writes=("prediction_learner_state", "skill_predictions", "model_shadow_scores"),
    )
    sources = flow.reads

    def __init__(self, settings: Settings, *, name: str = "predictions") -> None:
        self.settings = settings
        self._name = name
        self.device = torch.device("cpu")
        self._registry: ModelRegistry | None = None
        self.champion: Served | None = None
        self.challenger: Served | None = None
        # (role, learner id) -> (model label, answers applied) of the state in memory.
        self._markers: dict[tuple[str, str], tuple[str, int]] = {}
        self._next_poll = 0.0

    @property
    def name(self) -> str:
        return self._name

    def decode(self, record: SourceRecord) -> Attempt:
        return decode_attempt(record)

    def event_id(self, event: Attempt) -> str:
        return event.event_id

    # --- models ---------------------------------------------------------------------

    def _model_registry(self) -> ModelRegistry:
        if self._registry is None:
            from ml.registry import ModelRegistry  # mlflow is a slow import

            self._registry = ModelRegistry(self.settings)
        return self._registry

    def _fallback(self, reason: str) -> Served:
        FALLBACKS.labels(self.name, reason).inc()
        log.warning("serving BKT as champion", extra={"processor": self.name, "reason": reason})
        return Served(CHAMPION_ROLE, BKTTracer(), None, BKT_LABEL)

    def _load(self, role: str, version: str | None) -> Served | None:
        """The model holding ``role`` at ``version``; BKT (champion) or None when unusable."""
        if version is None:
            return self._fallback("no_model") if role == CHAMPION_ROLE else None
        name = self.settings.ml_model_name
        try:
            loaded = self._model_registry().load_version(name, version, self.device)
        except Exception as exc:
            log.warning(
                "could not load model",
                extra={"processor": self.name, "role": role, "version": version, "error": str(exc)},
            )
            return self._fallback("load_error") if role == CHAMPION_ROLE else None
        log.info(
            "serving model", extra={"processor": self.name, "role": role, "model": loaded.label}
        )
        return Served(role, ModelTracer(loaded, self.device), version, loaded.label)

    def poll_registry(self) -> None:
        """Reload the champion (and challenger) whose alias moved; blocking (MLflow calls)."""
        from ml.registry import CHALLENGER, CHAMPION

        name = self.settings.ml_model_name
        try:
            registry = self._model_registry()
            champion = registry.version_by_alias(name, CHAMPION)
            challenger = (
                registry.version_by_alias(name, CHALLENGER)
                if self.settings.predictions_shadow
                else None
            )
        except Exception as exc:
            log.warning("registry unreachable", extra={"processor": self.name, "error": str(exc)})
            if self.champion is None:
                self._set(CHAMPION_ROLE, self._fallback("load_error"))
            return
        champion_version = None if champion is None else str(champion.version)
        challenger_version = None if challenger is None else str(challenger.version)
        if self.champion is None or reload_needed(self.champion.version, champion_version):
            self._set(CHAMPION_ROLE, self._load(CHAMPION_ROLE, champion_version))
        current = None if self.challenger is None else self.challenger.version
        if reload_needed(current, challenger_version):
            self._set(CHALLENGER_ROLE, self._load(CHALLENGER_ROLE, challenger_version))

    def _set(self, role: str, served: Served | None) -> None:
        # In-memory state belongs to the old model: forget it, rows rebuild it.
        self._markers = {k: v for k, v in self._markers.items() if k[0] != role}
        if role == CHAMPION_ROLE:
            self.champion = served
            if served is not None:
                MODEL_IN_USE.labels(self.name, "dkt").set(int(served.kind == "dkt"))
                MODEL_IN_USE.labels(self.name, "bkt").set(int(served.kind == "bkt"))
        else:
            self.challenger = served

    async def _maybe_poll(self) -> None:
        now = time.monotonic()
        if self.champion is None or now >= self._next_poll:
            await asyncio.to_thread(self.poll_registry)
            self._next_poll = now + self.settings.predictions_registry_poll_s

    # --- batches --------------------------------------------------------------------

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[Attempt]]
    ) -> list[OutgoingRecord]:
        """Serve the batch's attempts (in order); write predictions, state and scores."""
        await self._maybe_poll()
        assert self.champion is not None
        attempts = [item.event for item in batch]
        learners = list(dict.fromkeys((a.tenant_id, a.user_id) for a in attempts))
        records = await conn.fetch(_LOAD_STATES, [t for t, _ in learners], [u for _, u in learners])
        rows = {
            (learner_id(r["tenant_id"], r["user_id"]), r["role"]): state_row(r) for r in records
        }
        item_types = await self._item_types(conn, attempts)
        board: dict[ScoreKey, ScoreCells] = {}
        state_rows: list[tuple[str, str, str, str, int, str, bytes | None, str]] = []
        predictions: list[tuple[str, str, str, float, str]] = []
        for role in (CHAMPION_ROLE, CHALLENGER_ROLE):
            served = self._serve(role, attempts, rows)
            if served is None:
                continue
            finals = self._outcomes(served[0], served[1], attempts, rows, item_types, board)
            for (tenant_id, user_id), (seen, history, p_next) in finals.items():
                learner = learner_id(tenant_id, user_id)
                model = served[0]
                state_rows.append(
                    (
                        tenant_id,
                        user_id,
                        role,
                        model.label,
                        seen,
                        json.dumps([[list(a.skill_ids), a.correct] for a in history]),
                        encode_tensor(model.tracer.recurrent_state(learner)),
                        json.dumps(p_next),
                    )
                )
                self._markers[(role, learner)] = (model.label, seen)
                if role == CHAMPION_ROLE:
                    predictions.extend(
                        (tenant_id, user_id, skill, p, model.label) for skill, p in p_next.items()
                    )
            PREDICTIONS.labels(self.name, role).inc(len(attempts))
        await self._write(conn, state_rows, predictions, board)
        if len(self._markers) > MAX_CACHED_LEARNERS:
            self._forget_learners()
        return []

    def _forget_learners(self) -> None:
        """Drop every learner's in-memory state; their rows rebuild it when they return."""
        for role, learner in self._markers:
            served = self.champion if role == CHAMPION_ROLE else self.challenger
            if served is not None:
                served.tracer.restore(learner, ())
        self._markers = {}

    def _serve(
        self, role: str, attempts: Sequence[Attempt], rows: Mapping[tuple[str, str], StateRow]
    ) -> tuple[Served, list[Mapping[str, float]]] | None:
        """Run ``role``'s model over the batch: P(correct) per skill after each attempt."""
        served = self.champion if role == CHAMPION_ROLE else self.challenger
        if served is None:
            return None
        inputs = [
            AttemptInput(learner_id(a.tenant_id, a.user_id), a.skill_ids, a.correct)
            for a in attempts
        ]
        try:
            self._sync(served, inputs, rows)
            return served, [result.p_correct for result in served.tracer.observe(inputs)]
        except Exception:
            log.warning(
                "inference failed",
                exc_info=True,
                extra={"processor": self.name, "role": role, "model": served.label},
            )
            # The failed model is dropped; the next registry poll loads it again (its
            # version no longer matches the alias), so a passing fault heals itself.
            if role == CHALLENGER_ROLE:
                self._set(CHALLENGER_ROLE, None)
                return None
            self._set(CHAMPION_ROLE, self._fallback("inference_error"))
            assert self.champion is not None
            self._sync(self.champion, inputs, rows)
            return self.champion, [r.p_correct for r in self.champion.tracer.observe(inputs)]

    def _sync(
        self,
        served: Served,
        inputs: Sequence[AttemptInput],
        rows: Mapping[tuple[str, str], StateRow],
    ) -> None:
        """Restore every learner whose in-memory state is not its committed row."""
        replays: list[AttemptInput] = []
        for learner in dict.fromkeys(a.learner_id for a in inputs):
            row = _row_for(rows, learner, served.role)
            same_model = row is None or row.model_version == served.label
            expected = (served.label, 0 if row is None else row.answers_seen)
            if same_model and self._markers.get((served.role, learner)) == expected:
                continue
            if row is not None and same_model and row.recurrent is not None:
                served.tracer.restore(learner, row.history, decode_tensor(row.recurrent))
            else:
                served.tracer.restore(learner, ())
                if row is not None:
                    replays.extend(row.history)
            self._markers[(served.role, learner)] = expected
        if replays:
            # One call: the tracer batches the learners' replays round by round.
            served.tracer.observe(replays)

    def _outcomes(
        self,
        served: Served,
        after: Sequence[Mapping[str, float]],
        attempts: Sequence[Attempt],
        rows: Mapping[tuple[str, str], StateRow],
        item_types: Mapping[tuple[str, str], str],
        board: dict[ScoreKey, ScoreCells],
    ) -> dict[tuple[str, str], tuple[int, list[AttemptInput], dict[str, float]]]:
        """Score each attempt's prior prediction; each learner's final (seen, history, p_next)."""
        finals: dict[tuple[str, str], tuple[int, list[AttemptInput], dict[str, float]]] = {}
        keep = self.settings.predictions_history_length
        short = self.settings.predictions_short_history
        for attempt, p_after in zip(attempts, after, strict=True):
            key = (attempt.tenant_id, attempt.user_id)
            learner = learner_id(*key)
            if key not in finals:
                row = _row_for(rows, learner, served.role)
                if row is None:
                    finals[key] = (0, [], {})
                else:
                    # Another model's predictions are not this model's to be scored on.
                    p_next = row.p_next if row.model_version == served.label else {}
                    finals[key] = (row.answers_seen, list(row.history), dict(p_next))
            seen, history, p_next = finals[key]
            p = attempt_prediction(p_next, attempt.skill_ids)
            if p is not None:
                item_type = item_types.get((attempt.tenant_id, attempt.item_id), "unknown")
                score_prediction(
                    board,
                    model_version=served.label,
                    role=served.role,
                    cells=subgroups(attempt.tenant_id, item_type, seen, short),
                    p_correct=p,
                    correct=attempt.correct,
                )
            history.append(AttemptInput(learner, attempt.skill_ids, attempt.correct))
            finals[key] = (
                seen + 1,
                history[-keep:],
                dict(p_after) if p_after else p_next,
            )
        return finals

    async def _item_types(
        self, conn: asyncpg.Connection, attempts: Sequence[Attempt]
    ) -> dict[tuple[str, str], str]:
        wanted = sorted({(a.tenant_id, a.item_id) for a in attempts if a.item_id})
        if not wanted:
            return {}
        records = await conn.fetch(_ITEM_TYPES, [t for t, _ in wanted], [i for _, i in wanted])
        return {(r["tenant_id"], r["item_id"]): r["kind"] for r in records}

    async def _write(
        self,
        conn: asyncpg.Connection,
        state_rows: list[tuple[str, str, str, str, int, str, bytes | None, str]],
        predictions: list[tuple[str, str, str, float, str]],
        board: Mapping[ScoreKey, ScoreCells],
    ) -> None:
        if state_rows:
            await conn.execute(
                _UPSERT_STATES, *(list(column) for column in zip(*state_rows, strict=True))
            )
        if predictions:
            # Sorted: two batches never lock the same rows in opposite orders.
            predictions.sort(key=lambda p: p[:3])
            await conn.execute(
                _UPSERT_PREDICTIONS, *(list(c) for c in zip(*predictions, strict=True))
            )
        if board:
            keys = sorted(board)
            cells = [board[k] for k in keys]
            await conn.execute(
                _UPSERT_SCORES,
                [k.model_version for k in keys],
                [k.role for k in keys],
                [k.subgroup_kind for k in keys],
                [k.subgroup for k in keys],
                [c.n for c in cells],
                [c.log_loss_sum for c in cells],
                [_pg_array(c.positive_bins) for c in cells],
                [_pg_array(c.negative_bins) for c in cells],
            )


def _pg_array(values: Sequence[int]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"

"""The recommendation-analytics processor: what learners did with their recommendations.

Input, five streams, all keyed by learner:

* RECOMMENDATIONS (``RecommendationsUpdated``): every item of a ranking becomes a row
  of ``recommendation_impressions`` (learner, item) with the session strategy it was
  ranked under; the earliest recommendation (event time) wins (first-touch attribution);
* ACTIVITY (``UserActivityEvent``): RESOURCE_OPENED clicks, RESOURCE_COMPLETED
  completes, RECOMMENDATION_FEEDBACK (published by api/services/feedback.py) sets the
  verdict: done (completes), helpful, not_helpful, skipped; other kinds are ignored;
* ATTEMPTS (``AttemptEvent``): answering an item clicks and completes it;
* MASTERY (``MasteryUpdated``): the change of p_mastery of each skill adds to the
  ``mastery_gain`` of the learner's recommended items tagged with it, divided by the
  item's number of skills (so an item's gain telescopes to the mean change of its
  skills' mastery since it was recommended);
* EXPERIMENTS (``ExperimentExposure``, from the recommendations processor): the
  learner's first exposure (event time) to an experiment, in ``experiment_exposures``.

An outcome counts only within :data:`ATTRIBUTION_WINDOW` after the item was first
recommended (event time), and each outcome column keeps its earliest time.

The look. After each batch, for every running experiment of a tenant the batch
touched, the arms are counted (exposed learners, and those with an outcome on the
target metric for an item first recommended after their exposure) and the always-valid
mSPRT p-value (:func:`scheduler.experiments.always_valid_p`) is updated as the running
minimum over looks in ``experiment_results``: a look per batch, which the
sequential test allows (docs/experiments.md).

Exactly-once effect. The increments and upserts are applied with the batch's offsets
in one transaction (:mod:`processors.base`), so a replayed batch is skipped. Order:
within a batch impressions go first, then exposures, actions and mastery, so an
outcome and the recommendation it follows may share a batch; across streams Kafka
gives no order, and an outcome read before its recommendation (a lagging partition)
is not attributed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from learnstream.events.v1 import (
    activity_pb2,
    attempt_pb2,
    common_pb2,
    derived_pb2,
    envelope_pb2,
    experiment_pb2,
)
from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from processors.base import Decoded, Flow
from processors.exceptions import PoisonEvent
from processors.offsets import SourceRecord, decode_learner_event
from scheduler.experiments import always_valid_p, variants_from_json

ATTRIBUTION_WINDOW = timedelta(days=7)
# Outcome of each target metric, as a condition on an impression row ``i``.
METRIC_CONDITIONS = {
    "click": "i.clicked_at IS NOT NULL",
    "complete": "i.completed_at IS NOT NULL",
    "helpful": "i.helpful_at IS NOT NULL",
    "mastery_gain": "i.mastery_gain > 0",
}
_VERDICTS = ("done", "helpful", "not_helpful", "skipped")
_STRATEGY_NAMES = {
    common_pb2.SESSION_STRATEGY_PRACTICE: "practice",
    common_pb2.SESSION_STRATEGY_REVIEW: "review",
    common_pb2.SESSION_STRATEGY_MOCK_TEST: "mock_test",
}


@dataclass(frozen=True, slots=True)
class Recommended:
    """A ranking: its items (item_id, kind, skills) and the session strategy."""

    tenant_id: str
    user_id: str
    occurred_at: datetime
    cause_event_id: str
    strategy: str
    items: tuple[tuple[str, str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class ItemAction:
    """Something the learner did with one item."""

    tenant_id: str
    user_id: str
    item_id: str
    occurred_at: datetime
    clicked: bool = False
    completed: bool = False
    verdict: str | None = None  # one of _VERDICTS


@dataclass(frozen=True, slots=True)
class MasteryMoved:
    """Per skill, the change of p_mastery (in [-1, 1]) one attempt made."""

    tenant_id: str
    user_id: str
    occurred_at: datetime
    deltas: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Exposed:
    """A learner served under an experiment's variant."""

    tenant_id: str
    user_id: str
    occurred_at: datetime
    experiment_id: str
    variant: str
    strategy: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event of a kind this processor does not count."""

    tenant_id: str


Outcome = Recommended | ItemAction | MasteryMoved | Exposed | Ignored


def _at(envelope: envelope_pb2.Envelope) -> datetime:
    return envelope.occurred_at.ToDatetime(tzinfo=UTC)


def decode_outcome(stream: Stream, record: SourceRecord) -> tuple[str, Outcome]:
    """(event_id, outcome) of a record of ``stream``; PoisonEvent says what is wrong."""
    if stream is Stream.RECOMMENDATIONS:
        ranking, event_id = decode_learner_event(record, derived_pb2.RecommendationsUpdated)
        env = ranking.envelope
        strategy = _STRATEGY_NAMES.get(ranking.strategy)
        if strategy is None:
            raise PoisonEvent(f"event {event_id}: strategy {ranking.strategy} is not known")
        items = tuple(
            (item.item_id, item.item_type, tuple(item.skill_ids))
            for item in ranking.items
            if item.item_id
        )
        cause = ranking.cause_event_id or event_id
        try:
            uuid.UUID(cause)
        except ValueError:
            raise PoisonEvent(f"event {event_id}: cause_event_id is not a UUID") from None
        return event_id, Recommended(env.tenant_id, env.user_id, _at(env), cause, strategy, items)
    if stream is Stream.ACTIVITY:
        activity, event_id = decode_learner_event(record, activity_pb2.UserActivityEvent)
        env = activity.envelope
        kind = activity.kind
        if not activity.resource_id:
            return event_id, Ignored(env.tenant_id)
        action = ItemAction(env.tenant_id, env.user_id, activity.resource_id, _at(env))
        if kind == activity_pb2.ACTIVITY_KIND_RESOURCE_OPENED:
            return event_id, _with(action, clicked=True)
        if kind == activity_pb2.ACTIVITY_KIND_RESOURCE_COMPLETED:
            return event_id, _with(action, clicked=True, completed=True)
        if kind == activity_pb2.ACTIVITY_KIND_RECOMMENDATION_FEEDBACK:
            verdict = activity.attributes.get("verdict", "")
            if verdict not in _VERDICTS:
                raise PoisonEvent(f"event {event_id}: verdict {verdict!r} is not known")
            return event_id, _with(action, completed=verdict == "done", verdict=verdict)
        return event_id, Ignored(env.tenant_id)
    if stream is Stream.ATTEMPTS:
        attempt, event_id = decode_learner_event(record, attempt_pb2.AttemptEvent)
        env = attempt.envelope
        if not attempt.item_id:
            return event_id, Ignored(env.tenant_id)
        return event_id, ItemAction(
            env.tenant_id, env.user_id, attempt.item_id, _at(env), clicked=True, completed=True
        )
    if stream is Stream.MASTERY:
        mastery, event_id = decode_learner_event(record, derived_pb2.MasteryUpdated)
        env = mastery.envelope
        deltas = []
        for skill in mastery.skills:
            if not (0 <= skill.p_mastery <= 1 and 0 <= skill.p_mastery_before <= 1):
                raise PoisonEvent(f"event {event_id}: p_mastery outside [0, 1]")
            deltas.append((skill.skill_id, skill.p_mastery - skill.p_mastery_before))
        return event_id, MasteryMoved(env.tenant_id, env.user_id, _at(env), tuple(deltas))
    if stream is Stream.EXPERIMENTS:
        exposure, event_id = decode_learner_event(record, experiment_pb2.ExperimentExposure)
        env = exposure.envelope
        try:
            experiment_id = str(uuid.UUID(exposure.experiment_id))
        except ValueError:
            raise PoisonEvent(f"event {event_id}: experiment_id is not a UUID") from None
        if not exposure.variant:
            raise PoisonEvent(f"event {event_id}: variant is required")
        return event_id, Exposed(
            env.tenant_id, env.user_id, _at(env), experiment_id, exposure.variant,
            exposure.strategy,
        )  # fmt: skip
    raise PoisonEvent(f"stream {stream} is not one this processor reads")


def _with(action: ItemAction, **changes: object) -> ItemAction:
    return ItemAction(
        action.tenant_id,
        action.user_id,
        action.item_id,
        action.occurred_at,
        bool(changes.get("clicked", False)),
        bool(changes.get("completed", False)),
        changes.get("verdict"),  # type: ignore[arg-type]  # str | None by construction
    )


@dataclass(frozen=True, slots=True)
class AnalyticsEvent:
    """A decoded record: its id (for logs) and what it means here."""

    event_id: str
    outcome: Outcome


_UPSERT_IMPRESSIONS = """
    INSERT INTO recommendation_impressions (tenant_id, user_id, item_id, kind, skill_ids,
        strategy, first_recommended_at, cause_event_id)
    SELECT r.tenant_id, r.user_id, r.item_id, r.kind, r.skill_ids::text[], r.strategy, r.at,
           r.cause
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::timestamptz[], $8::uuid[])
      AS r(tenant_id, user_id, item_id, kind, skill_ids, strategy, at, cause)
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, user_id, item_id) DO UPDATE SET
        kind = EXCLUDED.kind, skill_ids = EXCLUDED.skill_ids, strategy = EXCLUDED.strategy,
        first_recommended_at = EXCLUDED.first_recommended_at,
        cause_event_id = EXCLUDED.cause_event_id
    WHERE EXCLUDED.first_recommended_at < recommendation_impressions.first_recommended_at
"""
_UPSERT_EXPOSURES = """
    INSERT INTO experiment_exposures (tenant_id, experiment_id, user_id, variant, strategy,
        first_exposed_at)
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[])
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, experiment_id, user_id) DO UPDATE SET
        first_exposed_at = EXCLUDED.first_exposed_at
    WHERE EXCLUDED.first_exposed_at < experiment_exposures.first_exposed_at
"""
# LEAST ignores NULLs: each column keeps its earliest time.
_APPLY_ACTIONS = """
    UPDATE recommendation_impressions AS i SET
        clicked_at = LEAST(i.clicked_at, a.clicked_at),
        completed_at = LEAST(i.completed_at, a.completed_at),
        helpful_at = LEAST(i.helpful_at, a.helpful_at),
        not_helpful_at = LEAST(i.not_helpful_at, a.not_helpful_at),
        skipped_at = LEAST(i.skipped_at, a.skipped_at)
    FROM (
        SELECT i2.tenant_id, i2.user_id, i2.item_id,
               min(d.at) FILTER (WHERE d.clicked) AS clicked_at,
               min(d.at) FILTER (WHERE d.completed) AS completed_at,
               min(d.at) FILTER (WHERE d.verdict = 'helpful') AS helpful_at,
               min(d.at) FILTER (WHERE d.verdict = 'not_helpful') AS not_helpful_at,
               min(d.at) FILTER (WHERE d.verdict = 'skipped') AS skipped_at
        FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bool[],
                    $6::bool[], $7::text[]) AS d(tenant_id, user_id, item_id, at, clicked,
                                                 completed, verdict)
        JOIN recommendation_impressions AS i2
          ON i2.tenant_id = d.tenant_id AND i2.user_id = d.user_id AND i2.item_id = d.item_id
         AND d.at >= i2.first_recommended_at AND d.at < i2.first_recommended_at + $8::interval
        GROUP BY i2.tenant_id, i2.user_id, i2.item_id
    ) AS a
    WHERE i.tenant_id = a.tenant_id AND i.user_id = a.user_id AND i.item_id = a.item_id
"""
_APPLY_MASTERY = """
    UPDATE recommendation_impressions AS i SET mastery_gain = i.mastery_gain + g.gain
    FROM (
        SELECT i2.tenant_id, i2.user_id, i2.item_id,
               sum(d.delta) / max(cardinality(i2.skill_ids)) AS gain
        FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::float8[])
          AS d(tenant_id, user_id, at, skill_id, delta)
        JOIN recommendation_impressions AS i2
          ON i2.tenant_id = d.tenant_id AND i2.user_id = d.user_id
         AND d.skill_id = ANY(i2.skill_ids)
         AND d.at >= i2.first_recommended_at AND d.at < i2.first_recommended_at + $6::interval
        GROUP BY i2.tenant_id, i2.user_id, i2.item_id
    ) AS g
    WHERE i.tenant_id = g.tenant_id AND i.user_id = g.user_id AND i.item_id = g.item_id
"""
_RUNNING = """
    SELECT tenant_id, experiment_id, variants, target_metric, tau
    FROM experiments WHERE status = 'running' AND tenant_id = ANY($1::text[])
    ORDER BY tenant_id, experiment_id
"""
_COUNT_ARMS = """
    SELECT e.variant, count(*) AS exposed,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM recommendation_impressions AS i
               WHERE i.tenant_id = e.tenant_id AND i.user_id = e.user_id
                 AND i.first_recommended_at >= e.first_exposed_at AND {condition}
           )) AS converted
    FROM experiment_exposures AS e
    WHERE e.tenant_id = $1 AND e.experiment_id = $2
    GROUP BY e.variant
"""
_PREVIOUS_LOOK = """
    SELECT variant, p_value, looks FROM experiment_results
    WHERE tenant_id = $1 AND experiment_id = $2
    FOR UPDATE
"""
_STORE_LOOK = """
    INSERT INTO experiment_results (tenant_id, experiment_id, variant, exposed, converted,
        p_value, looks, looked_at)
    SELECT $1, $2, * FROM unnest($3::text[], $4::int[], $5::int[], $6::float8[], $7::int[],
                                 $8::timestamptz[])
    ON CONFLICT (tenant_id, experiment_id, variant) DO UPDATE SET
        exposed = EXCLUDED.exposed, converted = EXCLUDED.converted,
        p_value = EXCLUDED.p_value, looks = EXCLUDED.looks, looked_at = EXCLUDED.looked_at
"""


class RecommendationAnalyticsProcessor:
    """Outcomes of recommendations and experiment looks; see the module docstring."""

    name = "recommendation_analytics"
    flow = Flow(
        reads=(
            Stream.RECOMMENDATIONS,
            Stream.ACTIVITY,
            Stream.ATTEMPTS,
            Stream.MASTERY,
            Stream.EXPERIMENTS,
        ),
        writes=("recommendation_impressions", "experiment_exposures", "experiment_results"),
        emits=(),
    )
    sources = flow.reads

    def __init__(self, settings: Settings) -> None:
        self._streams = {settings.topic(stream): stream for stream in self.sources}

    def decode(self, record: SourceRecord) -> AnalyticsEvent:
        stream = self._streams.get(record.topic)
        if stream is None:
            raise PoisonEvent(f"topic {record.topic!r} is not one this processor reads")
        event_id, outcome = decode_outcome(stream, record)
        return AnalyticsEvent(event_id, outcome)

    def event_id(self, event: AnalyticsEvent) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[AnalyticsEvent]]
    ) -> list[OutgoingRecord]:
        """Update the impressions, exposures and running experiments' looks; emits nothing."""
        outcomes = [item.event.outcome for item in batch]
        await _store_impressions(conn, [o for o in outcomes if isinstance(o, Recommended)])
        await _store_exposures(conn, [o for o in outcomes if isinstance(o, Exposed)])
        await _apply_actions(conn, [o for o in outcomes if isinstance(o, ItemAction)])
        await _apply_mastery(conn, [o for o in outcomes if isinstance(o, MasteryMoved)])
        latest: dict[str, datetime] = {}
        for o in outcomes:
            if not isinstance(o, Ignored):
                latest[o.tenant_id] = max(o.occurred_at, latest.get(o.tenant_id, o.occurred_at))
        if latest:
            await look(conn, latest)
        return []


async def _store_impressions(conn: asyncpg.Connection, rankings: Sequence[Recommended]) -> None:
    first: dict[tuple[str, str, str], tuple[Recommended, str, tuple[str, ...]]] = {}
    for r in rankings:
        for item_id, kind, skills in r.items:
            key = (r.tenant_id, r.user_id, item_id)
            if key not in first or r.occurred_at < first[key][0].occurred_at:
                first[key] = (r, kind, skills)
    keys = sorted(first)
    if not keys:
        return
    await conn.execute(
        _UPSERT_IMPRESSIONS,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [first[k][1] for k in keys],
        # unnest cannot take a ragged 2-D array: each row's skills as one array literal.
        ["{" + ",".join(_quoted(s) for s in first[k][2]) + "}" for k in keys],
        [first[k][0].strategy for k in keys],
        [first[k][0].occurred_at for k in keys],
        [uuid.UUID(first[k][0].cause_event_id) for k in keys],
    )


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _store_exposures(conn: asyncpg.Connection, exposures: Sequence[Exposed]) -> None:
    first: dict[tuple[str, str, str], Exposed] = {}
    for e in exposures:
        key = (e.tenant_id, e.experiment_id, e.user_id)
        if key not in first or e.occurred_at < first[key].occurred_at:
            first[key] = e
    keys = sorted(first)
    if keys:
        await conn.execute(
            _UPSERT_EXPOSURES,
            [k[0] for k in keys],
            [uuid.UUID(k[1]) for k in keys],
            [k[2] for k in keys],
            [first[k].variant for k in keys],
            [first[k].strategy for k in keys],
            [first[k].occurred_at for k in keys],
        )


async def _apply_actions(conn: asyncpg.Connection, actions: Sequence[ItemAction]) -> None:
    if actions:
        await conn.execute(
            _APPLY_ACTIONS,
            [a.tenant_id for a in actions],
            [a.user_id for a in actions],
            [a.item_id for a in actions],
            [a.occurred_at for a in actions],
            [a.clicked for a in actions],
            [a.completed for a in actions],
            [a.verdict for a in actions],
            ATTRIBUTION_WINDOW,
        )


async def _apply_mastery(conn: asyncpg.Connection, moves: Sequence[MasteryMoved]) -> None:
    rows = [(m, skill, delta) for m in moves for skill, delta in m.deltas if delta != 0]
    if rows:
        await conn.execute(
            _APPLY_MASTERY,
            [m.tenant_id for m, _, _ in rows],
            [m.user_id for m, _, _ in rows],
            [m.occurred_at for m, _, _ in rows],
            [skill for _, skill, _ in rows],
            [delta for _, _, delta in rows],
            ATTRIBUTION_WINDOW,
        )


async def look(conn: asyncpg.Connection, latest: dict[str, datetime]) -> None:
    """One look at every running experiment of ``latest``'s tenants (tenant -> event time)."""
    for running in await conn.fetch(_RUNNING, sorted(latest)):
        tenant, experiment_id = running["tenant_id"], running["experiment_id"]
        condition = METRIC_CONDITIONS[running["target_metric"]]
        counts = {
            r["variant"]: (int(r["exposed"]), int(r["converted"]))
            for r in await conn.fetch(
                _COUNT_ARMS.format(condition=condition), tenant, experiment_id
            )
        }
        previous = {
            r["variant"]: (float(r["p_value"]), int(r["looks"]))
            for r in await conn.fetch(_PREVIOUS_LOOK, tenant, experiment_id)
        }
        names = [v.name for v in variants_from_json(running["variants"])]
        n_a, x_a = counts.get(names[0], (0, 0))
        variants, exposed, converted, p_values, looks = [], [], [], [], []
        for name in names:
            n, x = counts.get(name, (0, 0))
            p_before, looked = previous.get(name, (1.0, 0))
            p = 1.0
            if name != names[0]:
                p = float(always_valid_p(n_a, x_a, n, x, running["tau"], p_before))
            variants.append(name)
            exposed.append(n)
            converted.append(x)
            p_values.append(p)
            looks.append(looked + 1)
        await conn.execute(
            _STORE_LOOK,
            tenant,
            experiment_id,
            variants,
            exposed,
            converted,
            p_values,
            looks,
            [latest[tenant]] * len(variants),
        )

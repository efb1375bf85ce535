"""The recommendations processor: MasteryUpdated in, ranked next items out.

Input. Stream.MASTERY (``MasteryUpdated``, key ``tenant:user``): every mastery change
is also the moment a learner's schedule may have moved (the learner-state processor
writes review_schedule and publishes MasteryUpdated for the same attempt), so one
stream covers "on every mastery or schedule change". GapDetected is not consumed: the
gap severities are recomputed here from the mastery this processor keeps itself
(:func:`scheduler.recommend.gap_severities`), which keeps the ranking a function of
this processor's own input.

Per MasteryUpdated, in order:

1. the learner's mastery copy (``recommendation_learners.mastery``) takes the new
   p_mastery of each skill whose attempt count grew (older or duplicate estimates
   are ignored; an event with nothing new changes nothing and emits nothing);
2. sessions: an event opens a new session when its session_id changes or after 30
   minutes without events (event time, :func:`scheduler.recommend.starts_new_session`).
   Closing a session rewards the bandit: the learning gain is the mean, over the skills
   practised in it, of (p_mastery after the session's last answer - p_mastery before
   its first answer) (:func:`scheduler.recommend.session_gain`), recorded for the
   strategy and context bucket the session started with. The new session's strategy
   is a Thompson draw (:func:`scheduler.bandit.choose_strategy`) in the learner's
   bucket (ability band from the mean logit of mastery, number of due reviews), with
   the RNG seeded by the event id, so a replay draws the same strategy;
3. the ranking (:func:`scheduler.recommend.recommend`) over the tenant's published
   content, the learner's due reviews (``review_schedule``, read as stored) and the
   tenant's prerequisite graph, at the event's occurred_at, within a session time
   budget of the learner's ``learner_profiles.daily_minutes`` (30 without a profile);
4. ``recommendations`` keeps the learner's latest list, and a RecommendationsUpdated
   (deterministic event_id) is published per event.

Caches. Published content and the concept graph are cached per tenant and reloaded
when they change (:mod:`processors.recommendation_content`). Learners, due reviews
and bandit rows are loaded with one query each per batch.

Determinism. Bandit rows of a tenant are created before they are locked, so
concurrent workers serialise on them and never lose a reward. Bandit beliefs are
shared by a tenant's learners, so their exact values
(and the strategies drawn from them) depend on the order in which learners' events
are applied; on one partition that order is the log's, and a replay after a crash is
exact (the kill test uses one partition). Across partitions the beliefs are, like
any online learner's, order-dependent. review_schedule and the content tables are
written by others; a replay sees them as they are at replay time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import cast

import asyncpg
import numpy as np

from learnstream.events.v1 import common_pb2, derived_pb2, envelope_pb2
from learnstream.kafka import OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from learnstream.views.reviews import due_items
from processors.base import Decoded, Flow
from processors.events import PROCESSORS_SOURCE, LearnerKey, MasteryStep, decode_mastery_step
from processors.offsets import SourceRecord, derived_event_id
from processors.recommendation_content import ContentCache, TenantContent
from processors.recommendation_experiments import experiment_exposure, running_experiments
from scheduler.bandit import (
    BanditState,
    SessionStrategy,
    choose_strategy,
    context_bucket,
    record_reward,
)
from scheduler.experiments import RunningExperiment, Variant, assign_variant
from scheduler.gaps import ConceptGraph
from scheduler.recommend import (
    DEFAULT_RECOMMEND_CONFIG,
    RankedItem,
    RecommendConfig,
    SkillEvidence,
    ability_of,
    recommend,
    session_gain,
    starts_new_session,
    strategy_seed,
)
from scheduler.scoring import PickReason

DERIVED_KIND = "recommendations_updated"
# Variant strategies that fix the session strategy; any other ("bandit") keeps the draw.
_FIXED_STRATEGIES = frozenset(str(s) for s in SessionStrategy)

_STRATEGY_TO_PROTO = {
    SessionStrategy.PRACTICE: common_pb2.SESSION_STRATEGY_PRACTICE,
    SessionStrategy.REVIEW: common_pb2.SESSION_STRATEGY_REVIEW,
    SessionStrategy.MOCK_TEST: common_pb2.SESSION_STRATEGY_MOCK_TEST,
}
_REASON_TO_PROTO = {
    PickReason.DUE_REVIEW: derived_pb2.RECOMMENDATION_REASON_DUE_REVIEW,
    PickReason.GAP: derived_pb2.RECOMMENDATION_REASON_GAP,
    PickReason.DIFFICULTY_MATCH: derived_pb2.RECOMMENDATION_REASON_DIFFICULTY_MATCH,
    PickReason.LEARNING_PATH: derived_pb2.RECOMMENDATION_REASON_LEARNING_PATH,
    # Variety has no proto reason of its own; the detail text says "adds variety".
    PickReason.VARIETY: derived_pb2.RECOMMENDATION_REASON_UNSPECIFIED,
}

_LOAD_LEARNERS = """
    SELECT l.tenant_id, l.user_id, l.mastery, l.session_id, l.session_started,
           l.last_event_at, l.strategy, l.bucket, l.session_start, l.session_end,
           l.last_event_id
    FROM recommendation_learners AS l
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON l.tenant_id = wanted.tenant_id AND l.user_id = wanted.user_id
    ORDER BY l.tenant_id, l.user_id
    FOR UPDATE OF l
"""
# Every bucket row a batch may update exists before it is locked: two workers racing
# to create the same new bucket would otherwise both start from the prior, and the
# second upsert would erase the first one's reward.
_CREATE_BANDIT_ROWS = """
    INSERT INTO recommendation_bandit (tenant_id, bucket, beliefs, sessions)
    SELECT t.tenant_id, b.bucket, '{}'::jsonb, 0
    FROM unnest($1::text[]) AS t(tenant_id) CROSS JOIN unnest($2::text[]) AS b(bucket)
    ORDER BY t.tenant_id, b.bucket
    ON CONFLICT (tenant_id, bucket) DO NOTHING
"""
# The learner's daily study time (minutes) bounds the session's time budget.
_LOAD_BUDGETS = """
    SELECT p.tenant_id, p.user_id::text AS user_id, p.daily_minutes
    FROM learner_profiles AS p
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON p.tenant_id = wanted.tenant_id AND p.user_id::text = wanted.user_id
"""
_LOAD_BANDIT = """
    SELECT tenant_id, bucket, beliefs, sessions FROM recommendation_bandit
    WHERE tenant_id = ANY($1::text[])
    ORDER BY tenant_id, bucket
    FOR UPDATE
"""
_UPSERT_LEARNERS = """
    INSERT INTO recommendation_learners (tenant_id, user_id, mastery, session_id,
        session_started, last_event_at, strategy, bucket, session_start, session_end,
        last_event_id, updated_at)
    SELECT r.tenant_id, r.user_id, r.mastery::jsonb, r.session_id, r.session_started,
           r.last_event_at, r.strategy, r.bucket, r.session_start::jsonb,
           r.session_end::jsonb, r.last_event_id, now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::uuid[])
      AS r(tenant_id, user_id, mastery, session_id, session_started, last_event_at,
           strategy, bucket, session_start, session_end, last_event_id)
    ON CONFLICT (tenant_id, user_id) DO UPDATE SET
        mastery = EXCLUDED.mastery, session_id = EXCLUDED.session_id,
        session_started = EXCLUDED.session_started, last_event_at = EXCLUDED.last_event_at,
        strategy = EXCLUDED.strategy, bucket = EXCLUDED.bucket,
        session_start = EXCLUDED.session_start, session_end = EXCLUDED.session_end,
        last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at
"""
_UPSERT_BANDIT = """
    INSERT INTO recommendation_bandit (tenant_id, bucket, beliefs, sessions, updated_at)
    SELECT b.tenant_id, b.bucket, b.beliefs::jsonb, b.sessions, now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
      AS b(tenant_id, bucket, beliefs, sessions)
    ON CONFLICT (tenant_id, bucket) DO UPDATE SET
        beliefs = EXCLUDED.beliefs, sessions = EXCLUDED.sessions,
        updated_at = EXCLUDED.updated_at
"""
_DELETE_RANKINGS = """
    DELETE FROM recommendations AS r
    USING unnest($1::text[], $2::text[]) AS gone(tenant_id, user_id)
    WHERE r.tenant_id = gone.tenant_id AND r.user_id = gone.user_id
"""
_INSERT_RANKINGS = """
    INSERT INTO recommendations (tenant_id, user_id, rank, item_id, kind, skill_ids, score,
        reason, reason_detail, strategy, bucket, cause_event_id, computed_at)
    SELECT u.tenant_id, u.user_id, u.rank, u.item_id, u.kind, u.skill_ids::text[], u.score,
           u.reason, u.reason_detail, u.strategy, u.bucket, u.cause_event_id, u.computed_at
    FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[],
                $7::float8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::uuid[],
                $13::timestamptz[])
      AS u(tenant_id, user_id, rank, item_id, kind, skill_ids, score, reason, reason_detail,
           strategy, bucket, cause_event_id, computed_at)
"""


# Every context bucket _bucket() can give (no goal dates in the mastery stream yet).
ALL_BUCKETS = tuple(
    sorted({context_bucket(ability, due) for ability in (-1.0, 0.0, 1.0) for due in (0, 1, 10)})
)


@dataclass(slots=True)
class LearnerRow:
    """One ``recommendation_learners`` row (mutable while a batch is applied)."""

    mastery: dict[str, SkillEvidence]
    session_id: str
    session_started: datetime
    last_event_at: datetime
    strategy: SessionStrategy
    bucket: str
    session_start: dict[str, float] = field(default_factory=dict)
    session_end: dict[str, float] = field(default_factory=dict)
    last_event_id: str = ""

    def copy(self) -> LearnerRow:
        return LearnerRow(
            dict(self.mastery),
            self.session_id,
            self.session_started,
            self.last_event_at,
            self.strategy,
            self.bucket,
            dict(self.session_start),
            dict(self.session_end),
            self.last_event_id,
        )


@dataclass(frozen=True, slots=True)
class Ranking:
    """A learner's ranking after one event (what the view and the event carry)."""

    step: MasteryStep
    strategy: SessionStrategy
    bucket: str
    items: Sequence[RankedItem]
    # (experiment, the learner's variant) when this event opened a session under one
    exposure: tuple[RunningExperiment, Variant] | None = None


@dataclass(slots=True)
class BatchState:
    """Everything a batch reads, and then changes, in memory."""

    learners: dict[LearnerKey, LearnerRow]
    bandits: dict[str, BanditState]  # tenant -> beliefs of every bucket
    sessions: dict[tuple[str, str], int]  # (tenant, bucket) -> rewards recorded
    touched_buckets: set[tuple[str, str]] = field(default_factory=set)


def _bucket(
    mastery: Mapping[str, SkillEvidence], due: Mapping[str, datetime], now: datetime
) -> str:
    ability = (
        sum(ability_of(ev.p_mastery) for ev in mastery.values()) / len(mastery) if mastery else 0.0
    )
    return context_bucket(ability, sum(1 for at in due.values() if at <= now))


def _open_session(
    step: MasteryStep,
    row: LearnerRow | None,
    mastery: dict[str, SkillEvidence],
    learner_due: Mapping[str, datetime],
    state: BatchState,
    experiments: Mapping[str, RunningExperiment] | None,
) -> tuple[LearnerRow, BanditState, tuple[RunningExperiment, Variant] | None]:
    """Reward the closed session's strategy, pick the new one: (row, bandit, exposure).

    Counts the closed session in ``state.sessions``; the bandit returned is not yet stored.
    """
    change = step.change
    key = LearnerKey(change.tenant_id, change.user_id)
    bandit = state.bandits.get(change.tenant_id, BanditState())
    exposure: tuple[RunningExperiment, Variant] | None = None
    if row is not None and row.session_end:
        gain = session_gain(row.session_start, row.session_end)
        bandit = record_reward(bandit, row.bucket, row.strategy, gain)
        bucket_key = (change.tenant_id, row.bucket)
        state.sessions[bucket_key] = state.sessions.get(bucket_key, 0) + 1
        state.touched_buckets.add(bucket_key)
    bucket = _bucket(mastery, learner_due, change.occurred_at)
    rng = np.random.default_rng(strategy_seed(change.event_id))
    strategy = choose_strategy(bandit, bucket, rng)
    experiment = (experiments or {}).get(change.tenant_id)
    if experiment is not None:
        variant = assign_variant(
            experiment.experiment_id, key.tenant_id, key.user_id, experiment.variants
        )
        if variant.strategy in _FIXED_STRATEGIES:
            strategy = SessionStrategy(variant.strategy)
        exposure = (experiment, variant)
    new_row = LearnerRow(
        mastery=mastery,
        session_id=change.session_id,
        session_started=change.occurred_at,
        last_event_at=change.occurred_at,
        strategy=strategy,
        bucket=bucket,
    )
    return new_row, bandit, exposure


def chain_recommendations(
    steps: Sequence[MasteryStep],
    state: BatchState,
    content: Mapping[str, TenantContent],
    due: Mapping[LearnerKey, Mapping[str, datetime]],
    config: RecommendConfig = DEFAULT_RECOMMEND_CONFIG,
    budgets: Mapping[LearnerKey, float] | None = None,
    experiments: Mapping[str, RunningExperiment] | None = None,
) -> list[Ranking]:
    """Apply ``steps`` in order to ``state`` (changed in place); the rankings, in order.

    ``experiments`` maps a tenant to its running session-strategy experiment: a session
    opened under it takes the strategy of the learner's variant (hash assignment,
    :func:`scheduler.experiments.assign_variant`; "bandit" keeps the Thompson draw),
    and its ranking carries the exposure.

    ``budgets`` maps a learner to their session time budget in minutes (> 0; the
    profile's daily_minutes), replacing ``config``'s for them. Pure apart from mutating
    ``state``: no clock, no I/O, randomness seeded by event ids.
    """
    rankings: list[Ranking] = []
    for step in steps:
        change = step.change
        key = LearnerKey(change.tenant_id, change.user_id)
        row = state.learners.get(key)
        mastery = dict(row.mastery) if row is not None else {}
        fresh = [
            s
            for s in change.skills
            if s.skill_id not in mastery or s.attempts > mastery[s.skill_id].attempts
        ]
        if not fresh:
            continue  # a duplicate or older estimate: nothing changes, nothing to announce
        for skill in fresh:
            mastery[skill.skill_id] = SkillEvidence(
                skill.p_mastery, skill.attempts, change.occurred_at
            )
        learner_due = due.get(key, {})
        bandit = state.bandits.get(change.tenant_id, BanditState())
        exposure: tuple[RunningExperiment, Variant] | None = None
        if row is None or starts_new_session(
            row.session_id, row.last_event_at, change.session_id, change.occurred_at
        ):
            row, bandit, exposure = _open_session(
                step, row, mastery, learner_due, state, experiments
            )
        else:
            row = row.copy()
            row.mastery = mastery
        for skill in fresh:
            row.session_start.setdefault(skill.skill_id, step.before.get(skill.skill_id, 0.0))
            row.session_end[skill.skill_id] = skill.p_mastery
        row.last_event_at = max(row.last_event_at, change.occurred_at)
        row.last_event_id = change.event_id
        state.learners[key] = row
        state.bandits[change.tenant_id] = bandit
        tenant = content.get(change.tenant_id, TenantContent((), {}, ConceptGraph({})))
        learner_config = config
        if budgets is not None and key in budgets:
            learner_config = replace(
                config,
                constraints=replace(config.constraints, time_budget_minutes=budgets[key]),
            )
        items = recommend(
            tenant.catalog,
            mastery,
            learner_due,
            tenant.graph,
            tenant.requires,
            change.occurred_at,
            row.strategy,
            learner_config,
        )
        rankings.append(Ranking(step, row.strategy, row.bucket, items, exposure))
    return rankings


def recommendations_updated(ranking: Ranking, *, topic: str) -> OutgoingRecord:
    """The RecommendationsUpdated record of one ranking, keyed by learner; no clock in it."""
    change = ranking.step.change
    envelope = envelope_pb2.Envelope(
        event_id=derived_event_id(change.event_id, DERIVED_KIND),
        tenant_id=change.tenant_id,
        user_id=change.user_id,
        session_id=change.session_id,
        source=PROCESSORS_SOURCE,
    )
    envelope.occurred_at.FromDatetime(change.occurred_at)
    message = derived_pb2.RecommendationsUpdated(
        envelope=envelope,
        cause_event_id=change.event_id,
        strategy=_STRATEGY_TO_PROTO[ranking.strategy],
        items=[
            derived_pb2.Recommendation(
                item_id=item.item_id,
                item_type=item.kind,
                score=item.score,
                reason=_REASON_TO_PROTO[item.reason],
                reason_detail=item.reason_detail,
                skill_ids=item.skill_ids,
            )
            for item in ranking.items
        ],
    )
    return OutgoingRecord(
        topic=topic,
        key=learner_key(change.tenant_id, change.user_id),
        value=message.SerializeToString(),
    )


class RecommendationsProcessor:
    """Ranked recommendations per learner; see the module docstring."""

    name = "recommendations"
    flow = Flow(
        reads=(Stream.MASTERY,),
        writes=("recommendation_learners", "recommendation_bandit", "recommendations"),
        emits=(Stream.RECOMMENDATIONS, Stream.EXPERIMENTS),
    )
    sources = flow.reads

    def __init__(
        self, settings: Settings, *, config: RecommendConfig = DEFAULT_RECOMMEND_CONFIG
    ) -> None:
        self.config = config
        self._topic = settings.topic(Stream.RECOMMENDATIONS)
        self._exposure_topic = settings.topic(Stream.EXPERIMENTS)
        self._content = ContentCache(settings.processor_cache_ttl_s)

    def decode(self, record: SourceRecord) -> MasteryStep:
        return decode_mastery_step(record)

    def event_id(self, event: MasteryStep) -> str:
        return event.change.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[MasteryStep]]
    ) -> list[OutgoingRecord]:
        """Update the views for ``batch``; return the RecommendationsUpdated records."""
        steps = [item.event for item in batch]
        learners = sorted({LearnerKey(s.change.tenant_id, s.change.user_id) for s in steps})
        tenants = sorted({key.tenant_id for key in learners})
        content = await self.current_content(conn, tenants)
        stored = await _load_learners(conn, learners)
        state = BatchState(
            learners={key: row.copy() for key, row in stored.items()}, bandits={}, sessions={}
        )
        await conn.execute(_CREATE_BANDIT_ROWS, tenants, list(ALL_BUCKETS))
        for r in await conn.fetch(_LOAD_BANDIT, tenants):
            payload = json.loads(r["beliefs"])
            previous = state.bandits.get(r["tenant_id"], BanditState()).to_dict()
            state.bandits[r["tenant_id"]] = BanditState.from_dict(
                {**previous, r["bucket"]: payload}
            )
            state.sessions[(r["tenant_id"], r["bucket"])] = int(r["sessions"])
        due = {LearnerKey(*k): items for k, items in (await due_items(conn, learners)).items()}
        budgets = {
            LearnerKey(r["tenant_id"], r["user_id"]): float(r["daily_minutes"])
            for r in await conn.fetch(
                _LOAD_BUDGETS, [k.tenant_id for k in learners], [k.user_id for k in learners]
            )
        }
        experiments = await running_experiments(conn, tenants)
        rankings = chain_recommendations(
            steps, state, content, due, self.config, budgets, experiments
        )
        await _store(conn, state, rankings)
        records = [recommendations_updated(r, topic=self._topic) for r in rankings]
        exposures = [
            experiment_exposure(r.step.change, r.exposure, topic=self._exposure_topic)
            for r in rankings
            if r.exposure is not None
        ]
        return records + exposures

    async def current_content(
        self, conn: asyncpg.Connection, tenants: list[str]
    ) -> dict[str, TenantContent]:
        """Each tenant's published catalog and graph, reloaded only when they changed."""
        return await self._content.current(conn, tenants)


def _mastery_json(mastery: Mapping[str, SkillEvidence]) -> str:
    return json.dumps(
        {
            s: [ev.p_mastery, ev.attempts, ev.last_evidence_at.isoformat()]
            for s, ev in mastery.items()
        },
        sort_keys=True,
    )


def _parse_mastery(text: str) -> dict[str, SkillEvidence]:
    return {
        skill: SkillEvidence(float(p), int(n), datetime.fromisoformat(at).astimezone(UTC))
        for skill, (p, n, at) in json.loads(text).items()
    }


async def _load_learners(
    conn: asyncpg.Connection, learners: list[LearnerKey]
) -> dict[LearnerKey, LearnerRow]:
    rows = await conn.fetch(
        _LOAD_LEARNERS, [k.tenant_id for k in learners], [k.user_id for k in learners]
    )
    return {
        LearnerKey(r["tenant_id"], r["user_id"]): LearnerRow(
            mastery=_parse_mastery(r["mastery"]),
            session_id=r["session_id"],
            session_started=r["session_started"],
            last_event_at=r["last_event_at"],
            strategy=SessionStrategy(r["strategy"]),
            bucket=r["bucket"],
            session_start={k: float(v) for k, v in json.loads(r["session_start"]).items()},
            session_end={k: float(v) for k, v in json.loads(r["session_end"]).items()},
            last_event_id=str(r["last_event_id"]),
        )
        for r in rows
    }


async def _store(conn: asyncpg.Connection, state: BatchState, rankings: Sequence[Ranking]) -> None:
    latest: dict[LearnerKey, Ranking] = {}
    for ranking in rankings:
        latest[LearnerKey(ranking.step.change.tenant_id, ranking.step.change.user_id)] = ranking
    changed = sorted(latest)
    if not changed:
        return
    rows = [(key, state.learners[key]) for key in changed]
    await conn.execute(
        _UPSERT_LEARNERS,
        [k.tenant_id for k, _ in rows],
        [k.user_id for k, _ in rows],
        [_mastery_json(r.mastery) for _, r in rows],
        [r.session_id for _, r in rows],
        [r.session_started for _, r in rows],
        [r.last_event_at for _, r in rows],
        [str(r.strategy) for _, r in rows],
        [r.bucket for _, r in rows],
        [json.dumps(r.session_start, sort_keys=True) for _, r in rows],
        [json.dumps(r.session_end, sort_keys=True) for _, r in rows],
        [r.last_event_id for _, r in rows],
    )
    buckets = sorted(state.touched_buckets)
    if buckets:
        await conn.execute(
            _UPSERT_BANDIT,
            [tenant for tenant, _ in buckets],
            [bucket for _, bucket in buckets],
            [
                json.dumps(state.bandits[tenant].to_dict().get(bucket, {}), sort_keys=True)
                for tenant, bucket in buckets
            ],
            [state.sessions[b] for b in buckets],
        )
    await conn.execute(
        _DELETE_RANKINGS, [k.tenant_id for k in changed], [k.user_id for k in changed]
    )
    columns: list[list[object]] = [[] for _ in range(13)]
    for key in changed:
        ranking = latest[key]
        for item in ranking.items:
            values = (
                key.tenant_id,
                key.user_id,
                item.rank,
                item.item_id,
                item.kind,
                list(item.skill_ids),
                item.score,
                str(item.reason),
                item.reason_detail,
                str(ranking.strategy),
                ranking.bucket,
                ranking.step.change.event_id,
                ranking.step.change.occurred_at,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    if columns[0]:
        await _insert_rankings(conn, columns)


async def _insert_rankings(conn: asyncpg.Connection, columns: list[list[object]]) -> None:
    # unnest cannot take a ragged 2-D array, so each row's skill_ids travels as one
    # array literal ('{"a","b"}', JSON string quoting is valid there) and is cast back.
    skills = [
        "{"
        + ",".join(json.dumps(skill, ensure_ascii=False) for skill in cast(list[str], row))
        + "}"
        for row in columns[5]
    ]
    await conn.execute(_INSERT_RANKINGS, *columns[:5], skills, *columns[6:])

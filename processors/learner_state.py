"""The learner-state processor: everything one attempt changes about its learner.

Attempts are keyed ``tenant:user``, so one learner's attempts stay in order on one
partition and one worker. Per batch, in the one PostgreSQL transaction of
:mod:`processors.base` (offsets included), for the batch's attempts in offset order:

1. ``attempts`` (raw history): the row goes into the monthly partition of its
   ``occurred_at``. The table doubles as the duplicate check: an event_id already
   recorded (a client retry that got past ingest's dedup) changes nothing else.
2. ``skill_mastery``: one BKT step per skill (:func:`processors.bkt_chain.chain_updates`,
   :func:`scheduler.bkt.update`) with the skill's fitted parameters from
   ``bkt_parameters``, or :data:`scheduler.bkt.DEFAULT_PARAMS` for a skill without.
3. ``learner_ability``: one EAP step (:func:`scheduler.irt.update_posterior`) with
   the item's calibrated parameters from ``irt_item_parameters``. The posterior on
   its quadrature grid is stored, so each answer costs O(grid). An item without
   parameters (not calibrated yet) leaves ability alone and is counted in
   ``learnstream_learner_ability_skipped_total{reason="no_item_parameters"}``.
4. ``review_schedule``: the item's spaced-repetition state takes one review
   (:mod:`scheduler.srs`), FSRS unless ``tenant_settings.scheduler`` is ``sm2``. A
   stored state of the other algorithm (the tenant switched) restarts the item's
   schedule with the new one (counted in ``learnstream_review_schedule_resets_total``).
5. A ``MasteryUpdated`` per attempt that moved mastery
   (:func:`processors.events.mastery_updated`, deterministic event_id).

After the commit the touched learners' Redis hot cache is refreshed from the
committed rows (:mod:`processors.learner_cache`).

Optimistic versions. Every view row has a ``version``. Rows are read ``FOR UPDATE``
with their versions and written back with ``WHERE version = <read version>``
(new rows: an insert that must not meet an existing row). A writer that bypassed
this discipline and changed a row in between makes the written-row count come up
short: :class:`~processors.exceptions.StaleWrite` is raised (logged, counted in
``learnstream_processor_stale_writes_total``) and the batch is rolled back and
retried from a fresh read.

Caches. Fitted BKT parameters, item parameters and tenant settings are read per
tenant and kept ``processor_cache_ttl_s``; a new fit takes effect at the first
batch after the entry expires, never inside a batch. (Only a parameter change
between a crash and its replay can make a replayed batch differ from the first try.)

Partitions of ``attempts``. Monthly partitions are created on demand by the SQL
function ``attempts_ensure_partition`` on a separate, autocommitted connection,
before the batch writes to ``attempts``: creating a partition takes an ACCESS
EXCLUSIVE lock on the table, which inside the batch's transaction would be held to
its commit and block every other worker's inserts. Partitions already seen are
remembered, so this costs nothing after a month's first batch. There is no default
partition (creating a month would then have to move its rows out of it), so old
months are removed by dropping their partitions (docs/operations.md).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

import asyncpg
import numpy as np

from learnstream import db
from learnstream.exceptions import ServiceUnavailableError
from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from processors import metrics
from processors.base import Decoded, Flow
from processors.bkt_chain import MasteryKey, MasteryState, chain_updates
from processors.events import Attempt, LearnerKey, decode_attempt, mastery_updated
from processors.exceptions import StaleWrite
from processors.learner_cache import LearnerCache, Touched
from processors.offsets import SourceRecord
from scheduler import irt, srs
from scheduler.bkt import BKTParams
from scheduler.exceptions import ReviewStateError

log = logging.getLogger(__name__)

NAME = "learner_state"
DEFAULT_PRIOR = irt.NormalPrior()
# How long the partition DDL may wait for the lock on `attempts` before the batch is
# retried (readers or other workers' batches hold it meanwhile).
_PARTITION_LOCK_TIMEOUT = "10s"

T = TypeVar("T")


class ItemParams(NamedTuple):
    """One calibrated item on the logit metric: a > 0, b, c in [0, 1)."""

    a: float
    b: float
    c: float


class ReviewKey(NamedTuple):
    """One learner's one item."""

    tenant_id: str
    user_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class AbilityState:
    """One row of ``learner_ability`` (what the update needs)."""

    posterior: irt.AbilityPosterior
    prior: irt.NormalPrior
    estimate: irt.AbilityEstimate  # EAP ability and SE in logits
    last_event_id: str
    last_attempt_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class ReviewState:
    """One row of ``review_schedule``."""

    algorithm: str  # "fsrs" or "sm2"
    state: dict[str, Any]  # the scheduler's state dict (JSONB)
    due_at: datetime  # UTC
    reviews: int
    last_event_id: str
    last_reviewed_at: datetime  # UTC


@dataclass(frozen=True, slots=True)
class LearnerParameters:
    """What the batch's tenants use: fitted BKT and IRT parameters, SRS algorithm."""

    bkt: Mapping[tuple[str, str], BKTParams]  # (tenant, skill) -> params
    items: Mapping[tuple[str, str], ItemParams]  # (tenant, item) -> params
    scheduler: Mapping[str, str]  # tenant -> "fsrs" | "sm2"


@dataclass(frozen=True, slots=True)
class LearnerStates:
    """Stored rows the batch touches, with the versions they were read at."""

    mastery: Mapping[MasteryKey, MasteryState]
    mastery_versions: Mapping[MasteryKey, int]
    ability: Mapping[LearnerKey, AbilityState]
    ability_versions: Mapping[LearnerKey, int]
    reviews: Mapping[ReviewKey, ReviewState]
    review_versions: Mapping[ReviewKey, int]


@dataclass(frozen=True, slots=True)
class LearnerChanges:
    """New states of every row a batch changed (pure output of :func:`learner_changes`)."""

    mastery: dict[MasteryKey, MasteryState]
    ability: dict[LearnerKey, AbilityState]
    reviews: dict[ReviewKey, ReviewState]
    mastery_records: list[OutgoingRecord]
    ability_skipped: dict[str, int]  # reason -> attempts
    schedule_resets: int


def learner_changes(
    attempts: Sequence[Attempt],
    states: LearnerStates,
    parameters: LearnerParameters,
    *,
    mastery_topic: str,
    prior: irt.NormalPrior = DEFAULT_PRIOR,
) -> LearnerChanges:
    """Apply ``attempts`` (new ones, in order) to ``states``; pure, deterministic.

    Each attempt sees what the previous ones left, so one batch gives exactly what
    the same attempts applied one by one give.
    """
    mastery, updates = chain_updates(attempts, states.mastery, skill_params=parameters.bkt)
    # Each learner's calibrated answers of the batch, in order (one ability chain each).
    answered: dict[LearnerKey, list[tuple[Attempt, ItemParams]]] = {}
    reviews: dict[ReviewKey, ReviewState] = {}
    skipped: dict[str, int] = {}
    resets = 0
    for attempt in attempts:
        if not attempt.item_id:
            skipped["no_item"] = skipped.get("no_item", 0) + 1
            continue
        item = parameters.items.get((attempt.tenant_id, attempt.item_id))
        if item is None:
            skipped["no_item_parameters"] = skipped.get("no_item_parameters", 0) + 1
        else:
            learner = LearnerKey(attempt.tenant_id, attempt.user_id)
            answered.setdefault(learner, []).append((attempt, item))
        key = ReviewKey(attempt.tenant_id, attempt.user_id, attempt.item_id)
        algorithm = parameters.scheduler.get(attempt.tenant_id, srs.DEFAULT_ALGORITHM)
        review, reset = review_step(reviews.get(key) or states.reviews.get(key), attempt, algorithm)
        reviews[key] = review
        resets += reset
    ability = abilities_after(states.ability, answered, prior)
    records = [mastery_updated(u, topic=mastery_topic) for u in updates if u.steps]
    return LearnerChanges(mastery, ability, reviews, records, skipped, resets)


def abilities_after(
    before: Mapping[LearnerKey, AbilityState],
    answered: Mapping[LearnerKey, Sequence[tuple[Attempt, ItemParams]]],
    prior: irt.NormalPrior,
) -> dict[LearnerKey, AbilityState]:
    """Each learner's ability after their ``answered`` (in order; ``attempt.score`` in [0, 1]).

    A learner without a row in ``before`` starts from ``prior``; a stored posterior keeps
    the grid it was built on. :func:`scheduler.irt.add_likelihoods_shifted` shifts the
    log density after every answer, so the stored posterior is bit-identical however the
    answers fall into batches; the EAP summary is taken once, at the end, since only the
    last state of a batch is stored. The likelihoods of all answers on one grid come
    from one :func:`scheduler.irt.log_p_q` call (a learner has two or three answers in a
    typical batch, so numpy's per-call cost outweighed the arithmetic).
    """
    start: dict[LearnerKey, tuple[irt.AbilityPosterior, irt.NormalPrior]] = {}
    on_grid: dict[bytes, list[LearnerKey]] = {}
    for learner in answered:
        stored = before.get(learner)
        if stored is None:
            start[learner] = (irt.initial_posterior(prior), prior)
        else:
            start[learner] = (stored.posterior, stored.prior)
        on_grid.setdefault(start[learner][0].points.tobytes(), []).append(learner)
    ability: dict[LearnerKey, AbilityState] = {}
    for learners in on_grid.values():
        items = [item for learner in learners for _, item in answered[learner]]
        log_p, log_q = irt.log_p_q(
            start[learners[0]][0].points,
            np.array([item.a for item in items], dtype=np.float64),
            np.array([item.b for item in items], dtype=np.float64),
            np.array([item.c for item in items], dtype=np.float64),
        )
        first = 0
        for learner in learners:
            answers = answered[learner]
            last = first + len(answers)
            posterior, grid_prior = start[learner]
            shifted = irt.add_likelihoods_shifted(
                posterior,
                log_p[:, first:last],
                log_q[:, first:last],
                [attempt.score for attempt, _ in answers],
            )
            first = last
            last_attempt = answers[-1][0]
            ability[learner] = AbilityState(
                posterior=shifted,
                prior=grid_prior,
                estimate=irt.summarize(shifted),
                last_event_id=last_attempt.event_id,
                last_attempt_at=last_attempt.occurred_at,
            )
    return ability


def review_step(
    before: ReviewState | None, attempt: Attempt, algorithm: str
) -> tuple[ReviewState, bool]:
    """The item's review state after ``attempt``; True when a state of another algorithm
    was dropped (the tenant switched algorithms) and the schedule restarted."""
    scheduler = _scheduler(algorithm)
    reset = False
    if before is None:
        state = scheduler.new_state()
    else:
        try:
            state = scheduler.state_from_dict(before.state)
        except ReviewStateError:
            reset = True
            state = scheduler.new_state()
    scheduled = scheduler.review(
        state,
        srs.Attempt(
            correct=attempt.correct,
            response_time_ms=attempt.response_time_ms,
            hint_count=attempt.hint_count,
            score=attempt.score,
        ),
        attempt.occurred_at,
    )
    reviews = 1 if before is None or reset else before.reviews + 1
    return (
        ReviewState(
            algorithm=scheduler.algorithm,
            state=dict(scheduler.state_to_dict(scheduled.state)),
            due_at=scheduled.due_at,
            reviews=reviews,
            last_event_id=attempt.event_id,
            last_reviewed_at=attempt.occurred_at,
        ),
        reset,
    )


@functools.cache
def _scheduler(algorithm: str) -> srs.Scheduler[Any]:
    # Schedulers are stateless apart from their configuration; building FSRS's
    # validates its 21 weights, so one per algorithm, not one per review.
    return srs.make_scheduler(algorithm)


class TenantCache(Generic[T]):
    """Per-tenant values loaded through a connection and kept ``ttl_s`` seconds."""

    def __init__(
        self,
        load: Callable[[asyncpg.Connection, list[str]], Awaitable[dict[str, T]]],
        empty: Callable[[], T],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._empty = empty
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, T]] = {}

    async def get(self, conn: asyncpg.Connection, tenant_ids: Sequence[str]) -> dict[str, T]:
        """The values of ``tenant_ids``, loading the missing or expired ones in one query."""
        now = self._clock()
        stale = sorted(
            t for t in set(tenant_ids) if now - self._entries.get(t, (-1e18, None))[0] > self._ttl_s
        )
        if stale:
            loaded = await self._load(conn, stale)
            for tenant in stale:
                self._entries[tenant] = (now, loaded.get(tenant) or self._empty())
        return {t: self._entries[t][1] for t in tenant_ids}


_BKT_PARAMETERS = """
    SELECT tenant_id, skill_id, prior, learn, guess, slip, forget
    FROM bkt_parameters WHERE tenant_id = ANY($1::text[])
"""
_ITEM_PARAMETERS = """
    SELECT tenant_id, item_id, a, b, c FROM irt_item_parameters WHERE tenant_id = ANY($1::text[])
"""
_TENANT_SETTINGS = """
    SELECT tenant_id, scheduler FROM tenant_settings WHERE tenant_id = ANY($1::text[])
"""


async def _load_bkt(
    conn: asyncpg.Connection, tenants: list[str]
) -> dict[str, dict[str, BKTParams]]:
    found: dict[str, dict[str, BKTParams]] = {}
    for row in await conn.fetch(_BKT_PARAMETERS, tenants):
        found.setdefault(row["tenant_id"], {})[row["skill_id"]] = BKTParams(
            prior=row["prior"],
            learn=row["learn"],
            guess=row["guess"],
            slip=row["slip"],
            forget=row["forget"],
        )
    return found


async def _load_items(
    conn: asyncpg.Connection, tenants: list[str]
) -> dict[str, dict[str, ItemParams]]:
    found: dict[str, dict[str, ItemParams]] = {}
    for row in await conn.fetch(_ITEM_PARAMETERS, tenants):
        found.setdefault(row["tenant_id"], {})[row["item_id"]] = ItemParams(
            row["a"], row["b"], row["c"]
        )
    return found


async def _load_schedulers(conn: asyncpg.Connection, tenants: list[str]) -> dict[str, str]:
    return {
        row["tenant_id"]: row["scheduler"] for row in await conn.fetch(_TENANT_SETTINGS, tenants)
    }


class LearnerStateProcessor:
    """Mastery, ability, review schedule and attempt history per learner (module docstring)."""

    name = NAME
    flow = Flow(
        reads=(Stream.ATTEMPTS,),
        writes=("attempts", "skill_mastery", "learner_ability", "review_schedule"),
        emits=(Stream.MASTERY,),
    )
    sources = flow.reads

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._mastery_topic = settings.topic(Stream.MASTERY)
        ttl = settings.processor_cache_ttl_s
        self._bkt = TenantCache(_load_bkt, dict, ttl)
        self._items = TenantCache(_load_items, dict, ttl)
        self._schedulers = TenantCache(_load_schedulers, lambda: srs.DEFAULT_ALGORITHM, ttl)
        self._known_partitions: set[datetime] = set()
        self._ddl_conn: asyncpg.Connection | None = None
        self.cache = LearnerCache(settings)

    def decode(self, record: SourceRecord) -> Attempt:
        return decode_attempt(record)

    def event_id(self, event: Attempt) -> str:
        return event.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[Attempt]]
    ) -> list[OutgoingRecord]:
        """Write the batch's effect on every view through ``conn``; return MasteryUpdated."""
        await self._ensure_partitions({month_of(item.event.occurred_at) for item in batch})
        new_ids = await insert_attempts(conn, batch)
        attempts = _first_of_each(item.event for item in batch if item.event.event_id in new_ids)
        if not attempts:
            return []
        parameters = await self._parameters(conn, attempts)
        states = await load_states(conn, attempts)
        changes = learner_changes(attempts, states, parameters, mastery_topic=self._mastery_topic)
        await store_changes(conn, changes, states, processor=self.name)
        for reason, count in changes.ability_skipped.items():
            metrics.ABILITY_SKIPPED.labels(reason).inc(count)
        if changes.schedule_resets:
            metrics.SCHEDULE_RESETS.inc(changes.schedule_resets)
        return changes.mastery_records

    async def committed(self, conn: asyncpg.Connection, events: Sequence[Attempt]) -> None:
        """Refresh the hot cache of the learners the committed batch touched."""
        try:
            await self.cache.refresh(
                conn,
                (Touched(e.tenant_id, e.user_id, e.skill_ids, e.item_id) for e in events),
            )
        except Exception:
            metrics.HOT_CACHE_FAILURES.inc()
            raise

    async def close(self) -> None:
        """Release the Redis pool and the partition-DDL connection."""
        await self.cache.close()
        if self._ddl_conn is not None and not self._ddl_conn.is_closed():
            await self._ddl_conn.close()
        self._ddl_conn = None

    async def _parameters(
        self, conn: asyncpg.Connection, attempts: Sequence[Attempt]
    ) -> LearnerParameters:
        tenants = sorted({a.tenant_id for a in attempts})
        bkt = await self._bkt.get(conn, tenants)
        items = await self._items.get(conn, tenants)
        return LearnerParameters(
            bkt={(t, s): p for t in tenants for s, p in bkt[t].items()},
            items={(t, i): p for t in tenants for i, p in items[t].items()},
            scheduler=await self._schedulers.get(conn, tenants),
        )

    async def _ensure_partitions(self, months: set[datetime]) -> None:
        missing = sorted(months - self._known_partitions)
        if not missing:
            return
        if self._ddl_conn is None or self._ddl_conn.is_closed():
            self._ddl_conn = await db.connect(self.settings)
            await self._ddl_conn.execute(f"SET lock_timeout = '{_PARTITION_LOCK_TIMEOUT}'")
        for month in missing:
            try:
                name = await self._ddl_conn.fetchval("SELECT attempts_ensure_partition($1)", month)
            except asyncpg.exceptions.LockNotAvailableError as exc:
                raise ServiceUnavailableError(
                    f"could not lock attempts to create the partition of {month:%Y-%m} "
                    f"within {_PARTITION_LOCK_TIMEOUT}: {exc}"
                ) from exc
            log.info("attempts partition ready", extra={"partition": name})
            self._known_partitions.add(month)


def month_of(moment: datetime) -> datetime:
    """The first instant (UTC) of ``moment``'s calendar month: its partition's lower bound."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def _first_of_each(attempts: Iterable[Attempt]) -> list[Attempt]:
    # One attempt per event_id: a duplicate inside the batch is recorded once.
    seen: set[str] = set()
    first: list[Attempt] = []
    for attempt in attempts:
        if attempt.event_id not in seen:
            seen.add(attempt.event_id)
            first.append(attempt)
    return first


_INSERT_ATTEMPTS = """
    INSERT INTO attempts (tenant_id, event_id, user_id, session_id, item_id, item_version,
                          skill_ids, correct, score, response_time_ms, hint_count,
                          attempt_number, context, occurred_at, received_at, source_topic,
                          kafka_partition, kafka_offset)
    SELECT r.tenant_id, r.event_id, r.user_id, r.session_id, r.item_id, r.item_version,
           string_to_array(r.skill_ids, chr(31)), r.correct, r.score, r.response_time_ms,
           r.hint_count, r.attempt_number, r.context, r.occurred_at, r.received_at,
           r.source_topic, r.kafka_partition, r.kafka_offset
    FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::text[], $8::bool[], $9::float8[], $10::bigint[], $11::int[], $12::int[],
                $13::text[], $14::timestamptz[], $15::timestamptz[], $16::text[], $17::int[],
                $18::bigint[])
      AS r(tenant_id, event_id, user_id, session_id, item_id, item_version, skill_ids,
           correct, score, response_time_ms, hint_count, attempt_number, context,
           occurred_at, received_at, source_topic, kafka_partition, kafka_offset)
    ON CONFLICT (tenant_id, event_id, occurred_at) DO NOTHING
    RETURNING event_id
"""
# Skill ids travel as one text per row joined by the ASCII unit separator, because
# unnest() of a two-dimensional array would flatten it.
_SKILL_SEPARATOR = "\x1f"


async def insert_attempts(conn: asyncpg.Connection, batch: Sequence[Decoded[Attempt]]) -> set[str]:
    """Record the batch's attempts; returns the event_ids that were not recorded before."""
    events = [item.event for item in batch]
    records = [item.record for item in batch]
    rows = await conn.fetch(
        _INSERT_ATTEMPTS,
        [e.tenant_id for e in events],
        [e.event_id for e in events],
        [e.user_id for e in events],
        [e.session_id for e in events],
        [e.item_id for e in events],
        [e.item_version for e in events],
        [_SKILL_SEPARATOR.join(e.skill_ids) for e in events],
        [e.correct for e in events],
        [e.score for e in events],
        [e.response_time_ms for e in events],
        [e.hint_count for e in events],
        [e.attempt_number for e in events],
        [e.context for e in events],
        [e.occurred_at for e in events],
        [e.received_at for e in events],
        [r.topic for r in records],
        [r.partition for r in records],
        [r.offset for r in records],
    )
    return {str(row["event_id"]) for row in rows}


_LOAD_MASTERY = """
    SELECT s.tenant_id, s.user_id, s.skill_id, s.p_mastery, s.attempts, s.correct,
           s.last_event_id, s.last_attempt_at, s.version
    FROM skill_mastery AS s
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, user_id, skill_id)
      USING (tenant_id, user_id, skill_id)
    ORDER BY s.tenant_id, s.user_id, s.skill_id
    FOR UPDATE OF s
"""
_LOAD_ABILITY = """
    SELECT a.tenant_id, a.user_id, a.ability, a.ability_se, a.n_responses, a.prior_mean,
           a.prior_sd, a.log_density, a.last_event_id, a.last_attempt_at, a.version
    FROM learner_ability AS a
    JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, user_id) USING (tenant_id, user_id)
    ORDER BY a.tenant_id, a.user_id
    FOR UPDATE OF a
"""
_LOAD_REVIEWS = """
    SELECT r.tenant_id, r.user_id, r.item_id, r.algorithm, r.state, r.due_at, r.reviews,
           r.last_event_id, r.last_reviewed_at, r.version
    FROM review_schedule AS r
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, user_id, item_id)
      USING (tenant_id, user_id, item_id)
    ORDER BY r.tenant_id, r.user_id, r.item_id
    FOR UPDATE OF r
"""


async def load_states(conn: asyncpg.Connection, attempts: Sequence[Attempt]) -> LearnerStates:
    """Read (and lock) every view row ``attempts`` touch, with their versions."""
    skills = sorted({MasteryKey(a.tenant_id, a.user_id, s) for a in attempts for s in a.skill_ids})
    learners = sorted({LearnerKey(a.tenant_id, a.user_id) for a in attempts if a.item_id})
    items = sorted({ReviewKey(a.tenant_id, a.user_id, a.item_id) for a in attempts if a.item_id})
    mastery: dict[MasteryKey, MasteryState] = {}
    mastery_versions: dict[MasteryKey, int] = {}
    for row in await conn.fetch(_LOAD_MASTERY, *zip(*skills, strict=True)) if skills else []:
        key = MasteryKey(row["tenant_id"], row["user_id"], row["skill_id"])
        mastery[key] = MasteryState(
            p_mastery=row["p_mastery"],
            attempts=row["attempts"],
            correct=row["correct"],
            last_event_id=str(row["last_event_id"]),
            last_attempt_at=row["last_attempt_at"],
        )
        mastery_versions[key] = int(row["version"])
    ability: dict[LearnerKey, AbilityState] = {}
    ability_versions: dict[LearnerKey, int] = {}
    for row in await conn.fetch(_LOAD_ABILITY, *zip(*learners, strict=True)) if learners else []:
        learner = LearnerKey(row["tenant_id"], row["user_id"])
        density = np.asarray(row["log_density"], dtype=np.float64)
        prior = irt.NormalPrior(mean=row["prior_mean"], sd=row["prior_sd"], n_points=density.size)
        points, _ = irt.quadrature(prior)
        ability[learner] = AbilityState(
            posterior=irt.AbilityPosterior(points, density, row["n_responses"]),
            prior=prior,
            estimate=irt.AbilityEstimate(row["ability"], row["ability_se"]),
            last_event_id=str(row["last_event_id"]),
            last_attempt_at=row["last_attempt_at"],
        )
        ability_versions[learner] = int(row["version"])
    reviews: dict[ReviewKey, ReviewState] = {}
    review_versions: dict[ReviewKey, int] = {}
    for row in await conn.fetch(_LOAD_REVIEWS, *zip(*items, strict=True)) if items else []:
        review = ReviewKey(row["tenant_id"], row["user_id"], row["item_id"])
        reviews[review] = ReviewState(
            algorithm=row["algorithm"],
            state=json.loads(row["state"]),
            due_at=row["due_at"],
            reviews=row["reviews"],
            last_event_id=str(row["last_event_id"]),
            last_reviewed_at=row["last_reviewed_at"],
        )
        review_versions[review] = int(row["version"])
    return LearnerStates(
        mastery, mastery_versions, ability, ability_versions, reviews, review_versions
    )


@dataclass(frozen=True, slots=True)
class VersionedView:
    """How to write one view's rows with optimistic version checks (SQL built once)."""

    table: str
    keys: tuple[tuple[str, str], ...]  # (column, SQL type of the parameter array)
    values: tuple[tuple[str, str], ...]
    # column -> SQL type it is cast to from its parameter type (e.g. text -> float8[]).
    casts: Mapping[str, str] = field(default_factory=dict)

    def write_sql(self) -> str:
        """One statement: update rows at their read version, insert new rows; counts both.

        Parameters are the key columns, the value columns, then ``expected_version``
        (NULL for a row read as absent), each as an array.
        """
        columns = [*self.keys, *self.values, ("expected_version", "bigint")]
        arrays = ", ".join(f"${n}::{sql_type}[]" for n, (_, sql_type) in enumerate(columns, 1))
        names = ", ".join(name for name, _ in columns)
        key_names = [name for name, _ in self.keys]
        value_names = [name for name, _ in self.values]
        selected = ", ".join(
            f"{name}::{self.casts[name]} AS {name}" if name in self.casts else name
            for name, _ in columns
        )
        matches = " AND ".join(f"t.{k} = r.{k}" for k in key_names)
        updates = ", ".join(f"{v} = r.{v}" for v in value_names)
        inserted = ", ".join([*key_names, *value_names])
        return f"""
            WITH r AS (SELECT {selected} FROM unnest({arrays}) AS given({names})),
            updated AS (
                UPDATE {self.table} AS t
                SET {updates}, updated_at = now(), version = t.version + 1
                FROM r WHERE {matches} AND t.version = r.expected_version
                RETURNING 1
            ),
            inserted AS (
                INSERT INTO {self.table} ({inserted}, updated_at, version)
                SELECT {inserted}, now(), 1 FROM r WHERE r.expected_version IS NULL
                ON CONFLICT ({", ".join(key_names)}) DO NOTHING
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted)
        """

    async def write(
        self,
        conn: asyncpg.Connection,
        rows: Sequence[tuple[Any, ...]],
        expected_versions: Sequence[int | None],
        *,
        processor: str,
    ) -> None:
        """Write ``rows`` (key then value columns); StaleWrite if any row moved meanwhile."""
        if not rows:
            return
        columns = [list(column) for column in zip(*rows, strict=True)]
        written = await conn.fetchval(self.write_sql(), *columns, list(expected_versions))
        if written != len(rows):
            metrics.STALE_WRITES.labels(processor, self.table).inc()
            message = (
                f"{self.table}: {len(rows) - written} of {len(rows)} rows changed since this "
                "batch read them (another writer); rolling back to retry from a fresh read"
            )
            log.error(message, extra={"processor": processor, "view": self.table})
            raise StaleWrite(message)


MASTERY_VIEW = VersionedView(
    "skill_mastery",
    keys=(("tenant_id", "text"), ("user_id", "text"), ("skill_id", "text")),
    values=(
        ("p_mastery", "float8"),
        ("attempts", "int"),
        ("correct", "int"),
        ("last_event_id", "uuid"),
        ("last_attempt_at", "timestamptz"),
    ),
)
ABILITY_VIEW = VersionedView(
    "learner_ability",
    keys=(("tenant_id", "text"), ("user_id", "text")),
    values=(
        ("ability", "float8"),
        ("ability_se", "float8"),
        ("n_responses", "int"),
        ("prior_mean", "float8"),
        ("prior_sd", "float8"),
        # One text per row: unnest() would flatten a two-dimensional float8 array.
        ("log_density", "text"),
        ("last_event_id", "uuid"),
        ("last_attempt_at", "timestamptz"),
    ),
    casts={"log_density": "float8[]"},
)
REVIEW_VIEW = VersionedView(
    "review_schedule",
    keys=(("tenant_id", "text"), ("user_id", "text"), ("item_id", "text")),
    values=(
        ("algorithm", "text"),
        ("state", "jsonb"),
        ("due_at", "timestamptz"),
        ("reviews", "int"),
        ("last_event_id", "uuid"),
        ("last_reviewed_at", "timestamptz"),
    ),
)


async def store_changes(
    conn: asyncpg.Connection, changes: LearnerChanges, states: LearnerStates, *, processor: str
) -> None:
    """Write every changed row with its read version (see :class:`VersionedView`)."""
    mastery_keys = sorted(changes.mastery)
    await MASTERY_VIEW.write(
        conn,
        [
            (*key, s.p_mastery, s.attempts, s.correct, s.last_event_id, s.last_attempt_at)
            for key, s in ((k, changes.mastery[k]) for k in mastery_keys)
        ],
        [states.mastery_versions.get(k) for k in mastery_keys],
        processor=processor,
    )
    learners = sorted(changes.ability)
    await ABILITY_VIEW.write(
        conn,
        [
            (
                *key,
                a.estimate.ability,
                a.estimate.ability_se,
                a.posterior.n_responses,
                a.prior.mean,
                a.prior.sd,
                _float_array_literal(a.posterior.log_density),
                a.last_event_id,
                a.last_attempt_at,
            )
            for key, a in ((k, changes.ability[k]) for k in learners)
        ],
        [states.ability_versions.get(k) for k in learners],
        processor=processor,
    )
    review_keys = sorted(changes.reviews)
    await REVIEW_VIEW.write(
        conn,
        [
            (
                *key,
                r.algorithm,
                json.dumps(r.state, sort_keys=True),
                r.due_at,
                r.reviews,
                r.last_event_id,
                r.last_reviewed_at,
            )
            for key, r in ((k, changes.reviews[k]) for k in review_keys)
        ],
        [states.review_versions.get(k) for k in review_keys],
        processor=processor,
    )


def _float_array_literal(values: np.ndarray[Any, np.dtype[np.float64]]) -> str:
    # repr() of a Python float is the shortest text that reads back to the same double,
    # so the stored posterior is bit-identical to the computed one.
    return "{" + ",".join(map(repr, values.tolist())) + "}"

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
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import asyncpg
import numpy as np

from learnstream import db
from learnstream.db import Connection
from learnstream.exceptions import ServiceUnavailableError
from learnstream.kafka import OutgoingRecord, Stream
from learnstream.settings import Settings
from learnstream.views import mastery as mastery_view
from learnstream.views.ability import (
    ABILITY_VIEW,
    DEFAULT_PRIOR,
    AbilityState,
    ability_row,
    lock_abilities,
)
from learnstream.views.calibration import ItemParams, load_bkt, load_items
from learnstream.views.mastery import (
    MASTERY_VIEW,
    MasteryKey,
    MasteryState,
    SourcePosition,
    mastery_row,
)
from learnstream.views.reviews import (
    REVIEW_VIEW,
    ReviewKey,
    ReviewState,
    load_schedulers,
    lock_reviews,
    review_row,
)
from learnstream.views.versioned import VersionedView
from processors import metrics
from processors.base import Decoded, Flow
from processors.bkt_chain import chain_updates
from processors.events import Attempt, LearnerKey, decode_attempt, mastery_updated
from processors.exceptions import StaleWrite
from processors.learner_cache import LearnerCache, Touched
from processors.offsets import SourceRecord
from scheduler import irt, srs
from scheduler.bkt import BKTParams
from scheduler.exceptions import ReviewStateError

log = logging.getLogger(__name__)

NAME = "learner_state"
# How long the partition DDL may wait for the lock on `attempts` before the batch is
# retried (readers or other workers' batches hold it meanwhile).
_PARTITION_LOCK_TIMEOUT = "10s"

T = TypeVar("T")


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
        load: Callable[[Connection, list[str]], Awaitable[dict[str, T]]],
        empty: Callable[[], T],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._empty = empty
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, T]] = {}

    async def get(self, conn: Connection, tenant_ids: Sequence[str]) -> dict[str, T]:
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
        self._bkt = TenantCache(load_bkt, dict, ttl)
        self._items = TenantCache(load_items, dict, ttl)
        self._schedulers = TenantCache(load_schedulers, lambda: srs.DEFAULT_ALGORITHM, ttl)
        self._known_partitions: set[datetime] = set()
        self._ddl_conn: asyncpg.Connection | None = None
        self.cache = LearnerCache(settings)

    def decode(self, record: SourceRecord) -> Attempt:
        return decode_attempt(record)

    def event_id(self, event: Attempt) -> str:
        return event.event_id

    async def apply(
        self, conn: Connection, batch: Sequence[Decoded[Attempt]]
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

    async def committed(self, conn: Connection, events: Sequence[Attempt]) -> None:
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

    async def _parameters(self, conn: Connection, attempts: Sequence[Attempt]) -> LearnerParameters:
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


async def insert_attempts(conn: Connection, batch: Sequence[Decoded[Attempt]]) -> set[str]:
    """Record the batch's attempts; returns the event_ids that were not recorded before."""
    return await mastery_view.insert_attempts(
        conn,
        [item.event for item in batch],
        [SourcePosition(i.record.topic, i.record.partition, i.record.offset) for i in batch],
    )


async def load_states(conn: Connection, attempts: Sequence[Attempt]) -> LearnerStates:
    """Read (and lock) every view row ``attempts`` touch, with their versions."""
    skills = [MasteryKey(a.tenant_id, a.user_id, s) for a in attempts for s in a.skill_ids]
    learners = [LearnerKey(a.tenant_id, a.user_id) for a in attempts if a.item_id]
    items = [ReviewKey(a.tenant_id, a.user_id, a.item_id) for a in attempts if a.item_id]
    mastery, mastery_versions = await mastery_view.lock_mastery(conn, skills)
    ability, ability_versions = await lock_abilities(conn, learners)
    reviews, review_versions = await lock_reviews(conn, items)
    return LearnerStates(
        mastery, mastery_versions, ability, ability_versions, reviews, review_versions
    )


async def store_changes(
    conn: Connection, changes: LearnerChanges, states: LearnerStates, *, processor: str
) -> None:
    """Write every changed row with its read version (:mod:`learnstream.views.versioned`)."""
    mastery_keys = sorted(changes.mastery)
    await _write(
        conn,
        MASTERY_VIEW,
        [mastery_row(k, changes.mastery[k]) for k in mastery_keys],
        [states.mastery_versions.get(k) for k in mastery_keys],
        processor=processor,
    )
    learners = sorted(changes.ability)
    await _write(
        conn,
        ABILITY_VIEW,
        [ability_row(k, changes.ability[k]) for k in learners],
        [states.ability_versions.get(k) for k in learners],
        processor=processor,
    )
    review_keys = sorted(changes.reviews)
    await _write(
        conn,
        REVIEW_VIEW,
        [review_row(k, changes.reviews[k]) for k in review_keys],
        [states.review_versions.get(k) for k in review_keys],
        processor=processor,
    )


async def _write(
    conn: Connection,
    view: VersionedView,
    rows: Sequence[tuple[Any, ...]],
    expected_versions: Sequence[int | None],
    *,
    processor: str,
) -> None:
    """Write ``rows`` at their read versions; StaleWrite (logged, counted) if any moved."""
    stale = await view.write(conn, rows, expected_versions)
    if stale:
        metrics.STALE_WRITES.labels(processor, view.table).inc()
        message = (
            f"{view.table}: {stale} of {len(rows)} rows changed since this "
            "batch read them (another writer); rolling back to retry from a fresh read"
        )
        log.error(message, extra={"processor": processor, "view": view.table})
        raise StaleWrite(message)

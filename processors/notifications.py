"""The notifications processor: MasteryUpdated in, an inbox and NotificationEvents out.

Input. Stream.MASTERY (``MasteryUpdated``, key ``tenant:user``, decoded by
:func:`processors.events.decode_mastery_step`), like the recommendations processor:
each one is a learner's answer with its event time, which is what every rule here
needs. Rules (:mod:`scheduler.notify`), applied per event in order, at the event's
``occurred_at`` (event time; never the clock):

* review digest: the learner's items in ``review_schedule`` due at that time, at most
  one digest per learner per ``notification_digest_period_s`` (settings);
* milestone: a skill's p_mastery reaching the mastery bar (0.95) for the first time,
  and the count of mastered skills reaching 1, 5, 10, ...;
* streak: consecutive UTC days with answers reaching 3, 7, 14, 30, ...;
* strategy suggestion: ``notification_stall_sessions`` sessions in a row whose
  learning gain (as in the recommendations processor: mean Δp_mastery of the skills a
  session practised) is below 0.01.

Due-ness is driven by event time in the stream path (deterministic: what the kill -9
test checks). Learners who send no events are reached by a periodic Faust timer
(:func:`attach_idle_sweep`, every ``notification_sweep_interval_s``; 0 disables it):
:meth:`NotificationsProcessor.sweep` sends the digests due at the wall-clock time,
under the same row locks, period rule and notification ids as the stream path, so the
two never send two digests in one period. The sweep is clock-driven, hence not part of
the replay equality; it is tested on its own with a fixed ``now``.

Preferences. ``learner_profiles`` (migration 0014; user_id is a UUID there, matched
as text) gives the channels and quiet hours; a learner without a profile gets the
in-app inbox only and no quiet hours. A notification decided in quiet hours keeps its
created_at (event time) and gets ``deliver_after`` = the end of them.

Delivery (:mod:`processors.notification_delivery`). Every notification is written to
the in-app inbox (``notifications``) in the batch's transaction; for the webhook
channel an outbox row (``notification_deliveries``) is written too, and after each
commit (and each timer tick) a background task POSTs what is pending and due (with
retries) and marks it delivered; the stream never waits for a receiver. A crash
between the POST and the mark repeats the POST: the receiver dedupes by the
``Idempotency-Key`` header (the notification_id).

Identity. notification_id = NotificationEvent.envelope.event_id, a UUIDv5 of the
cause: the MasteryUpdated's event_id and the rule (milestones, streaks, stalls), or the
learner and the digest period (digests). A replay writes the same rows
(``ON CONFLICT DO NOTHING``, so the API's read_at survives) and the same events.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import faust

from learnstream import db
from learnstream.events.v1 import envelope_pb2, notification_pb2
from learnstream.kafka import AsyncProducer, OutgoingRecord, Stream, learner_key
from learnstream.settings import Settings
from learnstream.views.reviews import due_items
from processors.base import Decoded, Flow
from processors.events import (
    PROCESSORS_SOURCE,
    LearnerKey,
    MasteryChange,
    MasteryStep,
    decode_mastery_step,
)
from processors.exceptions import DeliveryFailed
from processors.notification_delivery import (
    IN_APP,
    WEBHOOK,
    InAppInbox,
    Notice,
    WebhookChannel,
    WebhookOutbox,
    array_literal,
    write_notices,
)
from processors.offsets import DERIVED_EVENT_NAMESPACE, SourceRecord
from scheduler.notify import (
    NotifyConfig,
    advance_stall,
    advance_streak,
    count_milestones,
    deliver_after,
    due_digest,
    newly_mastered,
    period_index,
)
from scheduler.recommend import session_gain, starts_new_session

log = logging.getLogger(__name__)

# Channels this processor knows; others in a profile (e.g. email) are kept on the
# notification for a future adapter but not delivered here.
_CHANNEL_TO_PROTO = {
    IN_APP: notification_pb2.NOTIFICATION_CHANNEL_IN_APP,
    WEBHOOK: notification_pb2.NOTIFICATION_CHANNEL_WEBHOOK,
    "email": notification_pb2.NOTIFICATION_CHANNEL_EMAIL,
}
_KIND_TO_PROTO = {
    "review_due": notification_pb2.NOTIFICATION_KIND_REVIEW_DUE,
    "milestone": notification_pb2.NOTIFICATION_KIND_MILESTONE,
    "streak": notification_pb2.NOTIFICATION_KIND_STREAK,
    "strategy_suggestion": notification_pb2.NOTIFICATION_KIND_STRATEGY_SUGGESTION,
}

_LOAD_LEARNERS = """
    SELECT l.* FROM notification_learners AS l
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON l.tenant_id = wanted.tenant_id AND l.user_id = wanted.user_id
    ORDER BY l.tenant_id, l.user_id
    FOR UPDATE OF l
"""
_LOAD_PROFILES = """
    SELECT p.tenant_id, p.user_id::text AS user_id, p.notification_channels,
           p.quiet_hours_start, p.quiet_hours_end, p.timezone
    FROM learner_profiles AS p
    JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, user_id)
      ON p.tenant_id = wanted.tenant_id AND p.user_id::text = wanted.user_id
"""
_UPSERT_LEARNERS = """
    INSERT INTO notification_learners (tenant_id, user_id, mastered_skills, streak_days,
        last_active_day, last_digest_period, stalled_sessions, session_id, last_event_at,
        session_start, session_end, last_event_id, updated_at)
    SELECT r.tenant_id, r.user_id, r.mastered::text[], r.streak_days, r.last_active_day,
           r.last_digest_period, r.stalled_sessions, r.session_id, r.last_event_at,
           r.session_start::jsonb, r.session_end::jsonb, r.last_event_id, now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::date[], $6::bigint[],
                $7::int[], $8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::uuid[])
      AS r(tenant_id, user_id, mastered, streak_days, last_active_day, last_digest_period,
           stalled_sessions, session_id, last_event_at, session_start, session_end,
           last_event_id)
    ON CONFLICT (tenant_id, user_id) DO UPDATE SET
        mastered_skills = EXCLUDED.mastered_skills, streak_days = EXCLUDED.streak_days,
        last_active_day = EXCLUDED.last_active_day,
        last_digest_period = EXCLUDED.last_digest_period,
        stalled_sessions = EXCLUDED.stalled_sessions, session_id = EXCLUDED.session_id,
        last_event_at = EXCLUDED.last_event_at, session_start = EXCLUDED.session_start,
        session_end = EXCLUDED.session_end, last_event_id = EXCLUDED.last_event_id,
        updated_at = EXCLUDED.updated_at
"""
# Learners with something due and no digest in the current period; SKIP LOCKED leaves
# learners whose events a batch is applying right now to that batch.
_IDLE_DUE = """
    SELECT l.tenant_id, l.user_id, l.last_digest_period, l.last_event_id
    FROM notification_learners AS l
    WHERE (l.last_digest_period IS NULL OR l.last_digest_period < $2)
      AND EXISTS (SELECT 1 FROM review_schedule AS r
                  WHERE r.tenant_id = l.tenant_id AND r.user_id = l.user_id AND r.due_at <= $1)
    ORDER BY l.tenant_id, l.user_id
    LIMIT $3
    FOR UPDATE OF l SKIP LOCKED
"""
_SET_DIGEST_PERIOD = """
    UPDATE notification_learners AS l SET last_digest_period = d.period, updated_at = now()
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS d(tenant_id, user_id, period)
    WHERE l.tenant_id = d.tenant_id AND l.user_id = d.user_id
"""


@dataclass(frozen=True, slots=True)
class Preferences:
    """A learner's notification preferences (learner_profiles); defaults without a profile."""

    channels: tuple[str, ...] = (IN_APP,)
    quiet_hours: tuple[time, time] | None = None
    timezone: str = "UTC"


@dataclass(slots=True)
class NotifyRow:
    """One ``notification_learners`` row (mutable while a batch is applied)."""

    mastered_skills: set[str] = field(default_factory=set)
    streak_days: int = 0
    last_active_day: date | None = None
    last_digest_period: int | None = None
    stalled_sessions: int = 0
    session_id: str = ""
    last_event_at: datetime | None = None
    session_start: dict[str, float] = field(default_factory=dict)
    session_end: dict[str, float] = field(default_factory=dict)
    last_event_id: str = ""


def notice_id(*parts: object) -> str:
    """A UUIDv5 of the parts: the same cause gives the same notification."""
    return str(
        uuid.uuid5(DERIVED_EVENT_NAMESPACE, ":".join(str(p) for p in ("notification", *parts)))
    )


def chain_notifications(
    steps: Sequence[MasteryStep],
    rows: dict[LearnerKey, NotifyRow],
    due: Mapping[LearnerKey, Mapping[str, datetime]],
    preferences: Mapping[LearnerKey, Preferences],
    config: NotifyConfig,
) -> list[Notice]:
    """Apply ``steps`` in order to ``rows`` (changed in place); the notices, in order.

    Pure apart from mutating ``rows``: event time only, no I/O.
    """
    notices: list[Notice] = []
    for step in steps:
        key = LearnerKey(step.change.tenant_id, step.change.user_id)
        notices.extend(
            _step_notices(
                step,
                rows.setdefault(key, NotifyRow()),
                due.get(key, {}),
                preferences.get(key, Preferences()),
                config,
            )
        )
    return notices


# notify(kind, notification_id, title, body) of the notice-collecting closure.
_Notify = Callable[[str, str, str, str], None]


def _session_step(step: MasteryStep, row: NotifyRow, config: NotifyConfig, notify: _Notify) -> None:
    """Close the previous session on a new one (stall rule), then add the event to ``row``."""
    change = step.change
    at = change.occurred_at
    previous_session = None if row.last_event_at is None else row.session_id
    if starts_new_session(previous_session, row.last_event_at, change.session_id, at):
        if row.session_end:
            gain = session_gain(row.session_start, row.session_end)
            row.stalled_sessions, suggest = advance_stall(row.stalled_sessions, gain, config)
            if suggest:
                notify(
                    "strategy_suggestion",
                    notice_id(change.event_id, "strategy_suggestion"),
                    "Try another way to practise",
                    f"Your mastery has barely moved over your last {config.stall_sessions} "
                    "sessions. A review session or a lesson on your weakest skill may help.",
                )
        row.session_id = change.session_id
        row.session_start, row.session_end = {}, {}
    for skill in change.skills:
        row.session_start.setdefault(skill.skill_id, step.before.get(skill.skill_id, 0.0))
        row.session_end[skill.skill_id] = skill.p_mastery
    row.last_event_at = at if row.last_event_at is None else max(row.last_event_at, at)
    row.last_event_id = change.event_id


def _mastery_step(
    change: MasteryChange, row: NotifyRow, config: NotifyConfig, notify: _Notify
) -> None:
    """Milestones: each skill newly mastered, then each mastered-count threshold crossed."""
    fresh = newly_mastered(
        row.mastered_skills,
        {s.skill_id: s.p_mastery for s in change.skills},
        config.mastered_at,
    )
    before = len(row.mastered_skills)
    row.mastered_skills.update(fresh)
    for skill_id in fresh:
        notify(
            "milestone",
            notice_id(change.tenant_id, change.user_id, "mastered", skill_id),
            f"Skill mastered: {skill_id}",
            f"You have mastered {skill_id}.",
        )
    for count in count_milestones(before, len(row.mastered_skills)):
        notify(
            "milestone",
            notice_id(change.tenant_id, change.user_id, "mastered_count", count),
            f"{count} skills mastered",
            f"You have now mastered {count} skill{'s' if count > 1 else ''}.",
        )


def _step_notices(
    step: MasteryStep,
    row: NotifyRow,
    due: Mapping[str, datetime],
    prefs: Preferences,
    config: NotifyConfig,
) -> list[Notice]:
    """The notices of one event; updates ``row``.

    Rules in order: session/stall, streak, mastery milestones, review digest.
    """
    change = step.change
    at = change.occurred_at
    notices: list[Notice] = []

    def notify(kind: str, ident: str, title: str, body: str, items: Sequence[str] = ()) -> None:
        notices.append(
            Notice(
                notification_id=ident,
                tenant_id=change.tenant_id,
                user_id=change.user_id,
                kind=kind,
                title=title,
                body=body,
                item_ids=tuple(items),
                channels=prefs.channels,
                cause_event_id=change.event_id,
                session_id=change.session_id,
                created_at=at,
                deliver_after=deliver_after(at, prefs.quiet_hours, prefs.timezone),
            )
        )

    _session_step(step, row, config, notify)

    day = at.astimezone(UTC).date()
    row.streak_days, streak_milestone = advance_streak(row.last_active_day, row.streak_days, day)
    row.last_active_day = day if row.last_active_day is None else max(row.last_active_day, day)
    if streak_milestone:
        notify(
            "streak",
            notice_id(change.tenant_id, change.user_id, "streak", day.isoformat()),
            f"{row.streak_days}-day streak!",
            f"You have practised {row.streak_days} days in a row. Keep it going.",
        )

    _mastery_step(change, row, config, notify)

    digest = due_digest(due, at, row.last_digest_period, config.digest_period)
    if digest is not None:
        period, items = digest
        row.last_digest_period = period
        title, body = digest_text(items)
        notify(
            "review_due",
            notice_id(change.tenant_id, change.user_id, "review_due", period),
            title,
            body,
            items,
        )
    return notices


def digest_text(items: Sequence[str]) -> tuple[str, str]:
    """Title and body of a review digest listing ``items`` (at most 5 named)."""
    shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
    return f"{len(items)} review{'s' if len(items) > 1 else ''} due", f"Time to review: {shown}."


def notification_event(notice: Notice, *, topic: str) -> OutgoingRecord:
    """The NotificationEvent record of one notice, keyed by learner; no clock in it."""
    envelope = envelope_pb2.Envelope(
        event_id=notice.notification_id,
        tenant_id=notice.tenant_id,
        user_id=notice.user_id,
        session_id=notice.session_id,
        source=PROCESSORS_SOURCE,
    )
    envelope.occurred_at.FromDatetime(notice.created_at)
    message = notification_pb2.NotificationEvent(
        envelope=envelope,
        kind=_KIND_TO_PROTO[notice.kind],
        channels=[_CHANNEL_TO_PROTO[c] for c in notice.channels if c in _CHANNEL_TO_PROTO],
        title=notice.title,
        body=notice.body,
        item_ids=notice.item_ids,
    )
    message.deliver_after.FromDatetime(notice.deliver_after)
    return OutgoingRecord(
        topic=topic,
        key=learner_key(notice.tenant_id, notice.user_id),
        value=message.SerializeToString(),
    )


class NotificationsProcessor:
    """Notification inbox, events and webhook outbox per learner; see the module docstring."""

    name = "notifications"
    flow = Flow(
        reads=(Stream.MASTERY,),
        writes=("notification_learners", "notifications", "notification_deliveries"),
        emits=(Stream.NOTIFICATIONS,),
    )
    sources = flow.reads

    def __init__(self, settings: Settings) -> None:
        self.config = NotifyConfig(
            digest_period=timedelta(seconds=settings.notification_digest_period_s),
            stall_sessions=settings.notification_stall_sessions,
        )
        self._topic = settings.topic(Stream.NOTIFICATIONS)
        self.inbox = InAppInbox()
        url = settings.notification_webhook_url
        self.webhook = WebhookChannel(url) if url else None
        # Webhook delivery runs after commits, in the background, on its own pool.
        self.outbox = WebhookOutbox(settings, self.webhook)

    def decode(self, record: SourceRecord) -> MasteryStep:
        return decode_mastery_step(record)

    def event_id(self, event: MasteryStep) -> str:
        return event.change.event_id

    async def apply(
        self, conn: asyncpg.Connection, batch: Sequence[Decoded[MasteryStep]]
    ) -> list[OutgoingRecord]:
        """Write the inbox, outbox and learner rows for ``batch``; the NotificationEvents."""
        steps = [item.event for item in batch]
        learners = sorted({LearnerKey(s.change.tenant_id, s.change.user_id) for s in steps})
        tenants, users = [k.tenant_id for k in learners], [k.user_id for k in learners]
        rows = {
            LearnerKey(r["tenant_id"], r["user_id"]): _notify_row(r)
            for r in await conn.fetch(_LOAD_LEARNERS, tenants, users)
        }
        due = {LearnerKey(*k): items for k, items in (await due_items(conn, learners)).items()}
        preferences = await _load_preferences(conn, tenants, users)
        notices = chain_notifications(steps, rows, due, preferences, self.config)
        await write_notices(conn, self.inbox, notices)
        await _store_rows(conn, {k: rows[k] for k in learners if k in rows})
        return [notification_event(n, topic=self._topic) for n in notices]

    async def sweep(
        self, conn: asyncpg.Connection, now: datetime, *, limit: int = 500
    ) -> list[OutgoingRecord]:
        """Digests for learners with reviews due at ``now`` (UTC) and none sent this period.

        Runs inside the caller's transaction (inbox, outbox and learner rows); returns
        the NotificationEvents to publish before the commit. At most ``limit`` learners.
        """
        period = period_index(now, self.config.digest_period)
        learners = await conn.fetch(_IDLE_DUE, now, period, limit)
        if not learners:
            return []
        keys = [LearnerKey(r["tenant_id"], r["user_id"]) for r in learners]
        tenants, users = [k.tenant_id for k in keys], [k.user_id for k in keys]
        due = {LearnerKey(*k): items for k, items in (await due_items(conn, keys)).items()}
        preferences = await _load_preferences(conn, tenants, users)
        notices: list[Notice] = []
        for r, key in zip(learners, keys, strict=True):
            digest = due_digest(
                due.get(key, {}), now, r["last_digest_period"], self.config.digest_period
            )
            if digest is None:
                continue
            items = digest[1]
            prefs = preferences.get(key, Preferences())
            title, body = digest_text(items)
            notices.append(
                Notice(
                    notification_id=notice_id(key.tenant_id, key.user_id, "review_due", period),
                    tenant_id=key.tenant_id,
                    user_id=key.user_id,
                    kind="review_due",
                    title=title,
                    body=body,
                    item_ids=tuple(items),
                    channels=prefs.channels,
                    cause_event_id=str(r["last_event_id"]),
                    session_id="",
                    created_at=now,
                    deliver_after=deliver_after(now, prefs.quiet_hours, prefs.timezone),
                )
            )
        await write_notices(conn, self.inbox, notices)
        await conn.execute(
            _SET_DIGEST_PERIOD,
            [n.tenant_id for n in notices],
            [n.user_id for n in notices],
            [period] * len(notices),
        )
        return [notification_event(n, topic=self._topic) for n in notices]

    async def committed(self, conn: asyncpg.Connection, events: Sequence[Any]) -> None:
        """After a commit: start draining the webhook outbox (in the background)."""
        self.start_delivery()

    def start_delivery(self) -> None:
        """Drain the due webhook outbox in the background (:meth:`WebhookOutbox.start`)."""
        self.outbox.start()

    async def close(self) -> None:
        """Stop a running delivery round and close its pool (undelivered rows stay pending)."""
        await self.outbox.close()


def _notify_row(r: Mapping[str, Any]) -> NotifyRow:
    return NotifyRow(
        mastered_skills=set(r["mastered_skills"]),
        streak_days=r["streak_days"],
        last_active_day=r["last_active_day"],
        last_digest_period=r["last_digest_period"],
        stalled_sessions=r["stalled_sessions"],
        session_id=r["session_id"],
        last_event_at=r["last_event_at"],
        session_start={k: float(v) for k, v in json.loads(r["session_start"]).items()},
        session_end={k: float(v) for k, v in json.loads(r["session_end"]).items()},
        last_event_id=str(r["last_event_id"]),
    )


async def _store_rows(conn: asyncpg.Connection, rows: Mapping[LearnerKey, NotifyRow]) -> None:
    if not rows:
        return
    keys = sorted(rows)
    values = [rows[k] for k in keys]
    await conn.execute(
        _UPSERT_LEARNERS,
        [k.tenant_id for k in keys],
        [k.user_id for k in keys],
        [array_literal(sorted(r.mastered_skills)) for r in values],
        [r.streak_days for r in values],
        [r.last_active_day for r in values],
        [r.last_digest_period for r in values],
        [r.stalled_sessions for r in values],
        [r.session_id for r in values],
        [r.last_event_at for r in values],
        [json.dumps(r.session_start, sort_keys=True) for r in values],
        [json.dumps(r.session_end, sort_keys=True) for r in values],
        [r.last_event_id for r in values],
    )


async def _load_preferences(
    conn: asyncpg.Connection, tenants: list[str], users: list[str]
) -> dict[LearnerKey, Preferences]:
    return {
        LearnerKey(r["tenant_id"], r["user_id"]): Preferences(
            channels=tuple(r["notification_channels"]) or (IN_APP,),
            quiet_hours=(r["quiet_hours_start"], r["quiet_hours_end"])
            if r["quiet_hours_start"] is not None
            else None,
            timezone=r["timezone"],
        )
        for r in await conn.fetch(_LOAD_PROFILES, tenants, users)
    }


async def run_idle_sweep(
    processor: NotificationsProcessor,
    pool: asyncpg.Pool,
    producer: AsyncProducer,
    now: datetime,
) -> int:
    """One sweep in one transaction; events published before the commit. Notices sent."""
    async with pool.acquire() as conn, conn.transaction():
        records = await processor.sweep(conn, now)
        if records:
            deliveries = await producer.publish(records)
            failed = [d.error for d in deliveries if not d.ok]
            if failed:
                raise DeliveryFailed(f"{len(failed)} of {len(records)} not acked: {failed[0]}")
    return len(records)


def attach_idle_sweep(
    app: faust.App, processor: NotificationsProcessor, settings: Settings
) -> None:
    """A Faust timer running :func:`run_idle_sweep` every ``notification_sweep_interval_s``.

    0 disables it. Every worker runs it; row locks (SKIP LOCKED) and the period rule
    keep two workers from sending the same digest, and its ids would dedupe anyway.
    """
    interval = settings.notification_sweep_interval_s
    if interval <= 0:
        return
    resources: dict[str, Any] = {}

    async def sweep_idle_learners() -> None:
        try:
            if "pool" not in resources:
                resources["pool"] = await db.create_pool(settings, max_size=1)
                resources["producer"] = AsyncProducer(settings)
            sent = await run_idle_sweep(
                processor, resources["pool"], resources["producer"], datetime.now(UTC)
            )
            if sent:
                log.info("idle sweep sent review digests", extra={"notifications": sent})
            # Also retries webhook deliveries that failed, without waiting for an event.
            processor.start_delivery()
        except Exception as exc:
            # The next tick retries; nothing was committed.
            log.warning("idle sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    app.timer(interval, name=f"{app.conf.id}.idle_sweep")(sweep_idle_learners)

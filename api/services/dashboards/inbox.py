"""The learner dashboard's feeds from the processors' views: ranked recommendations
(``recommendations``, processors/recommendations) and the notification inbox
(``notifications``, processors/notifications).

Migrations create both tables, so they are read without asking whether they exist;
``available`` stays in the answer (always true here) for clients that check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.exceptions import NotFoundError
from api.services.dashboards.rules import MAX_LISTED
from api.services.identifiers import is_uuid
from learnstream.db import Queryable


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One ranked recommendation and why; ``score`` from scheduler.scoring; times UTC."""

    rank: int
    item_id: str
    title: str | None  # None when the item is no longer published
    kind: str
    skill_ids: list[str]
    score: float
    reason: str  # due_review, gap, difficulty_match, learning_path, variety
    reason_detail: str
    strategy: str
    computed_at: datetime
    feedback: str | None  # the learner's latest verdict on this item


@dataclass(frozen=True, slots=True)
class Recommendations:
    """The learner's recommendations, or ``available: false`` and why not."""

    available: bool
    reason: str | None
    items: list[Recommendation]


@dataclass(frozen=True, slots=True)
class Notification:
    """One inbox entry; ``created_at``/``read_at`` UTC."""

    notification_id: str
    kind: str  # review_due, milestone, streak, strategy_suggestion
    title: str
    body: str
    item_ids: list[str]
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class Inbox:
    """The notification inbox (delivered entries, newest first), or why it is missing."""

    available: bool
    reason: str | None
    unread: int
    items: list[Notification]


_RECOMMENDATIONS = """
    SELECT r.rank, r.item_id, p.title, r.kind, r.skill_ids, r.score, r.reason, r.reason_detail,
           r.strategy, r.computed_at,
           (SELECT f.verdict FROM recommendation_feedback f
            WHERE f.tenant_id = r.tenant_id AND f.learner_id = r.user_id AND f.item_id = r.item_id
            ORDER BY f.given_at DESC LIMIT 1) AS feedback
    FROM recommendations r
    LEFT JOIN published_content p ON p.tenant_id = r.tenant_id AND p.item_id = r.item_id
    WHERE r.tenant_id = $1 AND r.user_id = $2
    ORDER BY r.rank LIMIT $3
"""


async def recommendations_part(
    db: Queryable, *, tenant_id: str, learner_id: str
) -> Recommendations:
    """Ranked recommendations with reasons, from the ``recommendations`` view."""
    rows = await db.fetch(_RECOMMENDATIONS, tenant_id, learner_id, MAX_LISTED)
    return Recommendations(
        True,
        None,
        [
            Recommendation(
                r["rank"],
                r["item_id"],
                r["title"],
                r["kind"],
                list(r["skill_ids"]),
                r["score"],
                r["reason"],
                r["reason_detail"],
                r["strategy"],
                r["computed_at"],
                r["feedback"],
            )
            for r in rows
        ],
    )


# A review digest lists every item due when it was made, so the newest one supersedes
# the older ones: the inbox shows (and counts) only that one, not one per past day.
_INBOX = """
    SELECT notification_id, kind, title, body, item_ids, created_at, read_at,
           count(*) FILTER (WHERE read_at IS NULL) OVER () AS unread
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY kind = 'review_due' ORDER BY created_at DESC, notification_id
        ) AS newest_first
        FROM notifications
        WHERE tenant_id = $1 AND user_id = $2 AND deliver_after <= $3
    ) delivered
    WHERE kind <> 'review_due' OR newest_first = 1
    ORDER BY created_at DESC, notification_id LIMIT $4
"""


async def notifications_part(
    db: Queryable, *, tenant_id: str, learner_id: str, now: datetime
) -> Inbox:
    """The inbox: notifications delivered by ``now`` (quiet hours respected), newest first.

    Of the review digests only the newest is listed: it supersedes the earlier ones.
    """
    rows = await db.fetch(_INBOX, tenant_id, learner_id, now, MAX_LISTED)
    return Inbox(
        True,
        None,
        int(rows[0]["unread"]) if rows else 0,
        [
            Notification(
                str(r["notification_id"]),
                r["kind"],
                r["title"],
                r["body"],
                list(r["item_ids"]),
                r["created_at"],
                r["read_at"],
            )
            for r in rows
        ],
    )


async def mark_notification_read(
    db: Queryable, *, tenant_id: str, learner_id: str, notification_id: str, now: datetime
) -> datetime:
    """Mark one of the learner's notifications read (idempotent); returns ``read_at``.

    NotFoundError when the learner has no such notification.
    """
    found = None
    if is_uuid(notification_id):
        found = await db.fetchval(
            """
            UPDATE notifications SET read_at = coalesce(read_at, $4)
            WHERE tenant_id = $1 AND user_id = $2 AND notification_id = $3
            RETURNING read_at
            """,
            tenant_id,
            learner_id,
            notification_id,
            now,
        )
    if found is None:
        raise NotFoundError(
            "no such notification for this learner",
            field="path.notification_id",
            reason="not found",
        )
    read_at: datetime = found
    return read_at

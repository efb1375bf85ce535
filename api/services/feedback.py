"""Learners' feedback on recommended items: done, skipped, helpful, not helpful.

Each verdict is a row of ``recommendation_feedback`` (the truth, read back by the
dashboard and by whoever measures recommendation quality) and a ``UserActivityEvent``
of kind RECOMMENDATION_FEEDBACK on the activity topic, keyed by the learner, with the
item as ``resource_id`` and ``{"verdict": ..., "comment": ...}`` as attributes, so a
recommendation processor can learn from it. The row keeps whether the event was
acknowledged (``event_published_at``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from api.exceptions import NotFoundError
from api.services.events import EventPublisher
from learnstream.db import Queryable
from learnstream.events.v1 import activity_pb2
from learnstream.kafka import Stream

SOURCE_APP = "learnstream-api"


class Verdict(StrEnum):
    """What the learner did with, or thought of, a recommendation."""

    DONE = "done"
    SKIPPED = "skipped"
    HELPFUL = "helpful"
    NOT_HELPFUL = "not_helpful"


@dataclass(frozen=True, slots=True)
class Feedback:
    """One stored verdict; ``given_at`` UTC."""

    feedback_id: str
    item_id: str
    verdict: Verdict
    comment: str
    given_at: datetime
    event_published: bool


def activity_event(
    feedback: Feedback, *, tenant_id: str, learner_id: str
) -> activity_pb2.UserActivityEvent:
    """The UserActivityEvent of ``feedback``; its event_id is the feedback_id."""
    event = activity_pb2.UserActivityEvent()
    envelope = event.envelope
    envelope.event_id = feedback.feedback_id
    envelope.tenant_id = tenant_id
    envelope.user_id = learner_id
    envelope.occurred_at.FromDatetime(feedback.given_at)
    envelope.source.app = SOURCE_APP
    envelope.source.platform = "api"
    event.kind = activity_pb2.ACTIVITY_KIND_RECOMMENDATION_FEEDBACK
    event.resource_id = feedback.item_id
    event.attributes["verdict"] = feedback.verdict.value
    if feedback.comment:
        event.attributes["comment"] = feedback.comment
    return event


async def record(
    db: Queryable,
    publisher: EventPublisher,
    *,
    tenant_id: str,
    user_id: str,
    learner_id: str,
    item_id: str,
    verdict: Verdict,
    comment: str,
    now: datetime,
) -> Feedback:
    """Store the verdict on published item ``item_id`` and publish it.

    NotFoundError (``path.item_id``) unless the item is live published content of the
    tenant: only what can be recommended can be judged.
    """
    published = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM published_content WHERE tenant_id = $1 AND item_id = $2)",
        tenant_id,
        item_id,
    )
    if not published:
        raise NotFoundError(
            "no published item with this id in your tenant",
            field="path.item_id",
            reason="not found",
        )
    feedback = Feedback(str(uuid.uuid4()), item_id, verdict, comment, now, False)
    await db.execute(
        """
        INSERT INTO recommendation_feedback (tenant_id, feedback_id, user_id, learner_id,
                                             item_id, verdict, comment, given_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        tenant_id,
        uuid.UUID(feedback.feedback_id),
        user_id,
        learner_id,
        item_id,
        verdict.value,
        comment,
        now,
    )
    event = activity_event(feedback, tenant_id=tenant_id, learner_id=learner_id)
    if not await publisher.publish(Stream.ACTIVITY, event):
        return feedback
    await db.execute(
        "UPDATE recommendation_feedback SET event_published_at = now() "
        "WHERE tenant_id = $1 AND feedback_id = $2",
        tenant_id,
        uuid.UUID(feedback.feedback_id),
    )
    return Feedback(feedback.feedback_id, item_id, verdict, comment, now, True)

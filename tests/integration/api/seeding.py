"""Test data for the placement and dashboard tests, written the way production writes it.

* Content goes through the CMS services (author creates, reviewer approves and
  publishes), item parameters into ``irt_item_parameters`` as the calibration DAG does.
* Learner views are filled by the processors' own code: each replayed answer becomes
  the AttemptEvent record a client would post, the learner-state processor applies it
  (attempts, skill_mastery, learner_ability, review_schedule) and its MasteryUpdated
  records go through the gaps processor (knowledge_gaps), each batch in one
  transaction, as the batch runner does, only without the broker in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from api.services import content, skills
from api.services.principals import Principal, PrincipalKind, Role
from infra.replay import ReplayAttempt, attempt_event
from learnstream.kafka import Stream, learner_key
from learnstream.settings import Settings
from processors.base import Decoded
from processors.gaps import GapsProcessor
from processors.learner_state import LearnerStateProcessor
from processors.offsets import SourceRecord

BATCH = 200


def staff(tenant_id: str) -> tuple[Principal, Principal]:
    """An author and a (different) reviewer of ``tenant_id``, as principals."""
    author = Principal(tenant_id, str(uuid.uuid4()), PrincipalKind.USER, frozenset({Role.AUTHOR}))
    reviewer = Principal(
        tenant_id, str(uuid.uuid4()), PrincipalKind.USER, frozenset({Role.REVIEWER})
    )
    return author, reviewer


async def ensure_skill(pool: asyncpg.Pool, *, tenant_id: str, skill_id: str, name: str) -> None:
    """Create the skill unless it exists."""
    exists = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM skills WHERE tenant_id = $1 AND skill_id = $2)",
        tenant_id,
        skill_id,
    )
    if not exists:
        await skills.create_skill(
            pool,
            tenant_id=tenant_id,
            skill_id=skill_id,
            name=name,
            description="",
            prerequisites=[],
            now=datetime.now(UTC),
        )


async def publish_question(
    pool: asyncpg.Pool,
    *,
    tenant_id: str,
    item_id: str,
    skill_id: str,
    prompt: str,
    choices: list[str] | None,
    answer_key: list[str],
    title: str | None = None,
) -> None:
    """A question published through the whole workflow (draft to published)."""
    author, reviewer = staff(tenant_id)
    now = datetime.now(UTC)
    payload: dict[str, object] = {"prompt": prompt, "answer_key": answer_key}
    if choices is not None:
        payload["choices"] = choices
    await content.create_item(
        pool,
        author,
        item_id=item_id,
        kind=content.ContentKind.QUESTION,
        title=title or item_id,
        skill_ids=[skill_id],
        payload=payload,
        now=now,
    )
    for who, target in (
        (author, content.ContentStatus.IN_REVIEW),
        (reviewer, content.ContentStatus.APPROVED),
        (reviewer, content.ContentStatus.PUBLISHED),
    ):
        await content.transition_item(
            pool, who, item_id=item_id, target=target, comment="seed", now=now
        )


async def calibrate(
    pool: asyncpg.Pool, *, tenant_id: str, item_id: str, a: float, b: float, c: float = 0.0
) -> None:
    """Store item parameters as the calibration DAG would."""
    await pool.execute(
        """
        INSERT INTO irt_item_parameters (tenant_id, item_id, a, b, c, model)
        VALUES ($1, $2, $3, $4, $5, '3PL')
        ON CONFLICT (tenant_id, item_id) DO UPDATE SET a = $3, b = $4, c = $5
        """,
        tenant_id,
        item_id,
        a,
        b,
        c,
    )


async def replay_into_views(
    pool: asyncpg.Pool,
    settings: Settings,
    attempts: Sequence[ReplayAttempt],
    *,
    tenant_id: str,
    dataset: str,
) -> int:
    """Apply ``attempts`` (in order) through the learner-state and gaps processors.

    Returns how many MasteryUpdated records the gaps processor consumed.
    """
    learner_state = LearnerStateProcessor(settings)
    gaps = GapsProcessor(settings)
    attempts_topic = settings.topic(Stream.ATTEMPTS)
    mastery_seen = 0
    try:
        for start in range(0, len(attempts), BATCH):
            chunk = attempts[start : start + BATCH]
            records = [
                SourceRecord(
                    topic=attempts_topic,
                    partition=0,
                    offset=start + i,
                    key=learner_key(tenant_id, a.user_id),
                    value=attempt_event(
                        a, dataset=dataset, tenant_id=tenant_id
                    ).attempt.SerializeToString(),
                )
                for i, a in enumerate(chunk)
            ]
            async with pool.acquire() as conn, conn.transaction():
                batch = [Decoded(r, learner_state.decode(r)) for r in records]
                mastery_records = await learner_state.apply(conn, batch)
                derived = [
                    SourceRecord(
                        topic=m.topic,
                        partition=0,
                        offset=mastery_seen + i,
                        key=m.key,
                        value=m.value,
                        headers=m.headers,
                    )
                    for i, m in enumerate(mastery_records)
                ]
                mastery_seen += len(derived)
                if derived:
                    await gaps.apply(conn, [Decoded(r, gaps.decode(r)) for r in derived])
    finally:
        await learner_state.close()
    return mastery_seen

"""Placement tests over HTTP: a computer-adaptive test whose result seeds the learner's state.

The test (:mod:`api.services.placement_cat`, over :mod:`scheduler.cat`) draws from the
tenant's *published questions that have calibrated IRT parameters*
(``irt_item_parameters``, filled by the calibration DAG); a question without
parameters, or without a skill, is not in the bank.

Session state lives in Redis under ``<namespace>:placement:<tenant>:<account>`` with a
TTL that resuming, reading and answering renew: the CAT state, the bank snapshot the
session started with (item ids, skills, a, b, c: indices stay valid if content changes
meanwhile), the item being asked, and the seed of its random picks. Each step replaces
the stored value only if it is still the one the step read (compare-and-set), so a
double-submitted answer is refused instead of counted twice. The server grades answers
against the question's answer key; the key never leaves the server.

The last answer stores the result and seeds the learner's views
(:mod:`api.services.placement_results`).
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from api.exceptions import ConflictError, NotFoundError
from api.services import learner_ids
from api.services.events import EventPublisher
from api.services.placement_cat import (
    BankItem,
    PlacementSession,
    cat_bank,
    grade,
    placement_config,
    step_rng,
)
from api.services.placement_results import (
    PlacementResult,
    finish,
    latest_result,
    publish,
    stored_result,
)
from learnstream import redis_keys
from learnstream.db import Queryable
from learnstream.settings import Settings
from scheduler import cat

__all__ = [
    "PlacementResult",
    "PlacementView",
    "Question",
    "answer",
    "get",
    "latest_result",
    "load_bank",
    "session_key",
    "start",
]

# Replace KEYS[1] with ARGV[2] (TTL ARGV[3] s) only if it still holds ARGV[1]; delete it
# instead when ARGV[2] is empty. Returns 1 if done.
_COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3])) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Question:
    """A question as the learner sees it: never the answer key."""

    item_id: str
    version: int
    title: str
    prompt: str
    choices: tuple[str, ...] | None
    skill_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlacementView:
    """Where a placement stands: the next question, or the result."""

    placement_id: str
    answered: int
    max_items: int
    question: Question | None
    result: PlacementResult | None
    expires_at: datetime | None  # of the Redis session; None once finished


def session_key(settings: Settings, *, tenant_id: str, user_id: str) -> str:
    """Redis key of the account's placement session (contains ``<tenant>:<user>``)."""
    return redis_keys.redis_key(settings.redis_namespace, redis_keys.PLACEMENT, tenant_id, user_id)


_BANK = """
    SELECT p.item_id, p.skill_ids[1] AS skill_id, ip.a, ip.b, ip.c
    FROM published_content p
    JOIN irt_item_parameters ip ON ip.tenant_id = p.tenant_id AND ip.item_id = p.item_id
    WHERE p.tenant_id = $1 AND p.kind = 'question' AND cardinality(p.skill_ids) > 0
    ORDER BY p.item_id
"""


async def load_bank(db: Queryable, *, tenant_id: str) -> list[BankItem]:
    """The tenant's calibrated, published, skill-tagged questions, by item_id."""
    return [
        BankItem(r["item_id"], r["skill_id"], r["a"], r["b"], r["c"])
        for r in await db.fetch(_BANK, tenant_id)
    ]


async def _question(
    db: Queryable, *, tenant_id: str, item_id: str
) -> tuple[Question, dict[str, Any]]:
    """The live published version of ``item_id`` and its payload (answer key included)."""
    row = await db.fetchrow(
        "SELECT item_id, version, title, skill_ids, payload FROM published_content "
        "WHERE tenant_id = $1 AND item_id = $2",
        tenant_id,
        item_id,
    )
    if row is None:
        # Archived while the session ran: the learner cannot answer it any more.
        raise ConflictError(
            f"question {item_id} was withdrawn during the test; start a new placement",
            field="body.item_id",
            reason="withdrawn",
        )
    payload: dict[str, Any] = json.loads(row["payload"])
    choices = payload.get("choices")
    question = Question(
        item_id=row["item_id"],
        version=row["version"],
        title=row["title"],
        prompt=str(payload.get("prompt", "")),
        choices=tuple(choices) if choices else None,
        skill_ids=tuple(row["skill_ids"]),
    )
    return question, payload


async def _view(
    db: Queryable, session: PlacementSession, settings: Settings, now: datetime
) -> PlacementView:
    question = None
    if session.current is not None:
        question, _ = await _question(
            db, tenant_id=session.tenant_id, item_id=session.bank[session.current].item_id
        )
    return PlacementView(
        placement_id=session.placement_id,
        answered=len(session.state.items),
        max_items=session.state.config.max_items,
        question=question,
        result=None,
        expires_at=now + timedelta(seconds=settings.placement_session_ttl_s),
    )


async def _stored_session(redis: Redis, key: str) -> tuple[bytes, PlacementSession] | None:
    raw = await redis.get(key)
    if raw is None:
        return None
    stored = raw.encode() if isinstance(raw, str) else raw  # the app's client returns bytes
    return stored, PlacementSession.from_json(stored)


async def _swap(redis: Redis, key: str, old: bytes, new: str, ttl_s: int) -> bool:
    done = await redis.eval(_COMPARE_AND_SET, 1, key, old, new, str(ttl_s))
    return bool(done)


async def start(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    now: datetime,
) -> tuple[PlacementView, bool]:
    """Start a placement for account ``user_id``, or resume the one in progress.

    Returns the view and True when a new session was started. ConflictError when the
    tenant has no calibrated published questions.
    """
    key = session_key(settings, tenant_id=tenant_id, user_id=user_id)
    existing = await _stored_session(redis, key)
    if existing is not None:
        await redis.expire(key, settings.placement_session_ttl_s)  # resuming is activity
        return await _view(db, existing[1], settings, now), False
    learner_id = await learner_ids.require_learner_id(db, tenant_id=tenant_id, user_id=user_id)
    bank = await load_bank(db, tenant_id=tenant_id)
    if not bank:
        raise ConflictError(
            "this tenant has no published questions with calibrated IRT parameters yet",
            reason="empty item bank",
        )
    state = cat.start(placement_config(bank, settings))
    seed = secrets.randbits(63)
    first = cat.next_item(state, cat_bank(bank), step_rng(seed, 0))
    session = PlacementSession(
        placement_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        user_id=user_id,
        learner_id=learner_id,
        started_at=now,
        bank=tuple(bank),
        state=state,
        current=first,
        seed=seed,
    )
    created = await redis.set(key, session.to_json(), ex=settings.placement_session_ttl_s, nx=True)
    if not created:  # a concurrent start won: resume that one
        existing = await _stored_session(redis, key)
        if existing is None:
            raise ConflictError("placement session changed meanwhile; try again")
        return await _view(db, existing[1], settings, now), False
    return await _view(db, session, settings, now), True


async def _require_session(
    redis: Redis, settings: Settings, *, tenant_id: str, user_id: str, placement_id: str
) -> tuple[bytes, PlacementSession] | None:
    stored = await _stored_session(
        redis, session_key(settings, tenant_id=tenant_id, user_id=user_id)
    )
    if stored is None or stored[1].placement_id != placement_id:
        return None
    return stored


async def get(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    publisher: EventPublisher,
    *,
    tenant_id: str,
    user_id: str,
    placement_id: str,
    now: datetime,
) -> PlacementView:
    """The session in progress, or the finished result (retrying an unpublished event)."""
    stored = await _require_session(
        redis, settings, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
    )
    if stored is not None:
        key = session_key(settings, tenant_id=tenant_id, user_id=user_id)
        await redis.expire(key, settings.placement_session_ttl_s)  # reading is activity
        return await _view(db, stored[1], settings, now)
    result = await stored_result(
        db, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
    )
    if result is None:
        raise NotFoundError(
            "no placement with this id for you (sessions expire after inactivity)",
            field="path.placement_id",
            reason="not found",
        )
    if not result.event_published:
        result = await publish(db, publisher, result, tenant_id=tenant_id)
    return _finished_view(result)


def _finished_view(result: PlacementResult) -> PlacementView:
    return PlacementView(
        placement_id=result.placement_id,
        answered=result.items_administered,
        max_items=result.items_administered,
        question=None,
        result=result,
        expires_at=None,
    )


async def answer(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    publisher: EventPublisher,
    *,
    tenant_id: str,
    user_id: str,
    placement_id: str,
    item_id: str,
    response: str,
    now: datetime,
) -> PlacementView:
    """Grade the answer to the current question; the next question, or the result.

    NotFoundError for an unknown or expired session, ConflictError for an answer to a
    question other than the current one (a stale or repeated submit).
    """
    stored = await _require_session(
        redis, settings, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id
    )
    if stored is None:
        if await stored_result(db, tenant_id=tenant_id, user_id=user_id, placement_id=placement_id):
            raise ConflictError(
                "this placement is finished", field="path.placement_id", reason="finished"
            )
        raise NotFoundError(
            "no placement with this id for you (sessions expire after inactivity)",
            field="path.placement_id",
            reason="not found",
        )
    raw, session = stored
    if session.current is None or session.bank[session.current].item_id != item_id:
        expected = None if session.current is None else session.bank[session.current].item_id
        raise ConflictError(
            f"the current question is {expected}, not {item_id}",
            field="body.item_id",
            reason="not the current question",
        )
    _, payload = await _question(db, tenant_id=tenant_id, item_id=item_id)
    correct = grade(payload, response)
    state = cat.record_answer(session.state, session.current, correct)
    bank = session.cat_bank()
    following = cat.next_item(state, bank, step_rng(session.seed, len(state.items)))
    advanced = PlacementSession(
        placement_id=session.placement_id,
        tenant_id=session.tenant_id,
        user_id=session.user_id,
        learner_id=session.learner_id,
        started_at=session.started_at,
        bank=session.bank,
        state=state,
        current=following,
        seed=session.seed,
    )
    key = session_key(settings, tenant_id=tenant_id, user_id=user_id)
    if following is not None:
        if not await _swap(redis, key, raw, advanced.to_json(), settings.placement_session_ttl_s):
            raise ConflictError(
                "this answer was already submitted", field="body.item_id", reason="answered"
            )
        return await _view(db, advanced, settings, now)
    # The last answer: store the result first (idempotent per placement_id), then end
    # the Redis session; a crash in between leaves a session whose finish repeats harmlessly.
    result = await finish(db, redis, settings, advanced, bank=bank, now=now)
    await _swap(redis, key, raw, "", settings.placement_session_ttl_s)
    if not result.event_published:
        result = await publish(db, publisher, result, tenant_id=tenant_id)
    return _finished_view(result)

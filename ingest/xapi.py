"""xAPI statements in: validate one statement and say which AttemptEvent it stands for.

Pure functions over the statement as sent (a JSON object) and a tenant's activity
mapping; the route (ingest/routes/xapi.py) does the I/O. Statements are validated
with the xAPI models of Ralph (``ralph.models.xapi.base``, the LRS of Open edX), so
what Ralph accepts and refuses is what this endpoint accepts and refuses.

A statement describes an answer when its verb is one of :data:`ANSWER_VERBS` and it
says how the answer went (``result.success`` or ``result.score``; ``passed`` and
``failed`` say it by themselves), its actor is an Agent identified by
``account`` (``account.name`` is the learner id) and its object is an Activity the
tenant mapped to an item. Anything else is "not an attempt", with the reason.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from ralph.models.xapi.base.agents import BaseXapiAgentWithAccount
from ralph.models.xapi.base.results import BaseXapiResult
from ralph.models.xapi.base.statements import BaseXapiStatement
from ralph.models.xapi.base.unnested_objects import BaseXapiActivity

from ingest.validation import Violation
from learnstream.events.v1 import attempt_pb2, envelope_pb2

# The xAPI version this endpoint speaks (X-Experience-API-Version of every answer).
XAPI_VERSION = "1.0.3"

_ADL = "http://adlnet.gov/expapi/verbs/"
# Verb id -> what it says about the answer when result.success is absent:
# True/False when the verb itself says it, None when the result must.
ANSWER_VERBS: dict[str, bool | None] = {
    f"{_ADL}answered": None,
    f"{_ADL}completed": None,
    f"{_ADL}scored": None,
    f"{_ADL}passed": True,
    f"{_ADL}failed": False,
}
# Statements whose id the client left out get a name-based UUID of their content, so
# a client that resends one (a retry) is deduplicated like one that sent an id.
_STATEMENT_NAMESPACE = uuid.UUID("9b3c4c8e-2f0a-5a57-9a43-1f7f3f1f6a10")
# Properties the LRS sets or that may differ between equal statements (xAPI 1.0.3,
# "Statement Comparison Requirements"); left out of the content hash.
_NOT_COMPARED = frozenset({"id", "authority", "stored", "version", "attachments"})


@dataclass(frozen=True, slots=True)
class ActivityMapping:
    """What a tenant's activity id stands for: an item of its CMS and the skills it tests."""

    item_id: str
    item_version: int  # 0: unknown
    skill_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """A statement that Ralph's models accept, with what the route needs of it."""

    statement_id: str  # canonical lower-case UUID (the client's, or derived from content)
    statement: dict[str, Any]  # as sent, with ``id`` filled in
    model: BaseXapiStatement
    learner_id: str  # actor.account.name, else the actor's other identifier
    verb_id: str
    activity_id: str  # object.id when the object is an Activity, else ""
    content_sha256: bytes


def parse_statement(raw: Any, *, field: str) -> ParsedStatement | Violation:
    """``raw`` validated by Ralph's xAPI statement model, or the first thing wrong with it.

    ``field`` prefixes the paths in the violation (``statements[2]``).
    """
    if not isinstance(raw, dict):
        return Violation(field, "a statement is a JSON object")
    try:
        model = BaseXapiStatement.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        return Violation(f"{field}.{path}" if path else field, first["msg"])
    except (ValueError, TypeError) as exc:  # Ralph's validators raise these too
        return Violation(field, str(exc))
    compared = {k: v for k, v in raw.items() if k not in _NOT_COMPARED}
    canonical = json.dumps(compared, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).digest()
    statement_id = str(model.id) if model.id else str(uuid.uuid5(_STATEMENT_NAMESPACE, canonical))
    obj = model.object
    return ParsedStatement(
        statement_id=statement_id.lower(),
        statement={**raw, "id": statement_id.lower()},
        model=model,
        learner_id=_learner_id(model),
        verb_id=str(model.verb.id),
        activity_id=str(obj.id) if isinstance(obj, BaseXapiActivity) else "",
        content_sha256=digest,
    )


def _learner_id(model: BaseXapiStatement) -> str:
    actor = model.actor
    if isinstance(actor, BaseXapiAgentWithAccount):
        name: str = actor.account.name
        return name
    # mbox, mbox_sha1sum, openid or a Group: kept for the stored row (and erasure).
    for name in ("mbox", "mbox_sha1sum", "openid"):
        value = getattr(actor, name, None)
        if value:
            return str(value)
    return str(getattr(actor, "name", "") or "group")


@dataclass(frozen=True, slots=True)
class Answer:
    """How an answer went: ``correct`` and partial credit ``score`` in [0, 1] (None: unsaid)."""

    correct: bool
    score: float | None


def answer_of(verb_id: str, result: BaseXapiResult | None) -> Answer | None:
    """The answer a statement with ``verb_id`` and ``result`` describes; None if none.

    ``correct``: result.success, else what the verb says (passed/failed), else a
    score of 1. ``score``: result.score.scaled clamped to [0, 1], else
    (raw - min) / (max - min) with min 0 when absent.
    """
    if verb_id not in ANSWER_VERBS:
        return None
    score = _score(result)
    success = result.success if result is not None else None
    verdict = ANSWER_VERBS[verb_id]
    if success is not None:
        correct = success
    elif verdict is not None:
        correct = verdict
    elif score is not None:
        correct = score >= 1.0
    else:
        return None
    return Answer(correct=correct, score=score)


def _score(result: BaseXapiResult | None) -> float | None:
    if result is None or result.score is None:
        return None
    s = result.score
    if s.scaled is not None:
        return _unit(s.scaled)
    if s.raw is not None and s.max is not None:
        low = s.min if s.min is not None else Decimal(0)
        if s.max > low:
            return _unit((s.raw - low) / (s.max - low))
    return None


def _unit(value: Decimal) -> float:
    return min(1.0, max(0.0, float(value)))


def not_an_attempt(parsed: ParsedStatement, mapping: ActivityMapping | None) -> str | None:
    """Why ``parsed`` becomes no AttemptEvent (for the stored row and refusals); None if it does."""
    if not isinstance(parsed.model.actor, BaseXapiAgentWithAccount):
        return "actor is not an Agent with an account (account.name is the learner id)"
    if parsed.verb_id not in ANSWER_VERBS:
        return f"verb {parsed.verb_id} does not describe an answer"
    if not parsed.activity_id:
        return "object is not an Activity"
    if answer_of(parsed.verb_id, parsed.model.result) is None:
        return "result says neither success nor score"
    if mapping is None:
        return f"activity {parsed.activity_id} is mapped to no item (PUT /v1/xapi/activities)"
    return None


def attempt_event(
    parsed: ParsedStatement, mapping: ActivityMapping, *, stored_at: datetime
) -> attempt_pb2.AttemptEvent:
    """The AttemptEvent of a statement that :func:`not_an_attempt` passed.

    event_id is the statement id (the idempotency key); occurred_at the statement's
    timestamp, else ``stored_at`` (as the xAPI spec fills it in); session_id the
    context's registration; response_time_ms the result's duration.
    """
    model = parsed.model
    answer = answer_of(parsed.verb_id, model.result)
    assert answer is not None  # not_an_attempt() said it is an attempt
    envelope = envelope_pb2.Envelope(event_id=parsed.statement_id, user_id=parsed.learner_id)
    occurred = model.timestamp or stored_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=UTC)
    envelope.occurred_at.FromDatetime(occurred.astimezone(UTC))
    envelope.source.app = (model.context.platform if model.context else None) or "xapi"
    envelope.source.platform = "xapi"
    if model.context is not None and model.context.registration is not None:
        envelope.session_id = str(model.context.registration)
    event = attempt_pb2.AttemptEvent(
        envelope=envelope,
        item_id=mapping.item_id,
        item_version=mapping.item_version,
        skill_ids=list(mapping.skill_ids),
        correct=answer.correct,
        context=attempt_pb2.ATTEMPT_CONTEXT_PRACTICE,
    )
    if answer.score is not None:
        event.score = answer.score
    result = model.result
    if result is not None:
        if result.response is not None:
            event.response = result.response
        if result.duration is not None:
            event.response_time_ms = _milliseconds(result.duration)
    return event


def _milliseconds(duration: timedelta) -> int:
    return max(0, round(duration.total_seconds() * 1000))

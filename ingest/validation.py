"""Per-event validation: pure functions of one event, the caller's tenant and the time.

:func:`validate_event` returns every :class:`Violation` of one ``LearningEvent``,
each naming the offending field relative to the event (``attempt.score``); the
route prefixes ``events[i].``. Nothing here does I/O, so each rule is unit-tested
on both sides of its boundary.

Decisions worth knowing (also in the OpenAPI description):

* ``attempt_number`` and ``item_version`` may be 0, meaning "unknown" (the proto3
  default when a client does not track them); negative values are rejected.
* ``attempt.context`` and ``session.strategy`` may be UNSPECIFIED (the contract says
  "treated as practice" / not set); ``session.action`` and ``activity.kind`` are
  required, because an event without them says nothing.
* ``envelope.event_id`` must be a UUID in the 8-4-4-4-12 hex form and not the nil
  UUID (a client that forgot to set it would otherwise dedupe every event into
  one). Ingest publishes it lower-cased, so ``A…`` and ``a…`` are one event.
* ``item_id`` is required for attempts and code submissions: item-level models
  (IRT, fraud) cannot use an answer to nothing.
* ``envelope.tenant_id`` comes from the API key; a client may leave it empty or
  repeat its own tenant, anything else is rejected.
* Every identifier must be printable (``str.isprintable``): no character of the
  Unicode categories Cc (controls, NUL included), Cf (format: zero-width and bidi
  marks), Cs (surrogates), Co (private use), Cn (unassigned), Zl and Zp, and no
  space separator but U+0020. Such characters break downstream stores (PostgreSQL
  text refuses NUL, so the processors dead-lettered accepted events), logs and
  lookalike-free display. The identifiers are every string field of every event
  kind, derived from the proto descriptors, except the free text in
  :data:`ingest.identifiers.FREE_TEXT_FIELDS`; attribute keys are identifiers, their
  values free text.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from ingest.identifiers import IDENTIFIER_FIELDS, IDENTIFIER_RULE, JOINED_IDENTIFIERS
from learnstream.events.v1 import (
    activity_pb2,
    attempt_pb2,
    code_submission_pb2,
    common_pb2,
    envelope_pb2,
    ingest_pb2,
    placement_pb2,
    session_pb2,
)
from learnstream.settings import Settings

MAX_USER_ID_CHARS = 128
MAX_ATTRIBUTES = 20
# An item exercises a handful of skills; thousands would be a client bug that costs every
# processor one view row each (and only the record-size cap stopped them).
MAX_SKILL_IDS = 64
# Kinds of event a LearningEvent can hold (the names of its oneof members).
EVENT_KINDS = ("attempt", "code_submission", "session", "placement", "activity")
# The message inside a LearningEvent; each has an ``envelope``.
EventMessage = (
    attempt_pb2.AttemptEvent
    | code_submission_pb2.CodeSubmissionEvent
    | session_pb2.SessionEvent
    | placement_pb2.PlacementEvent
    | activity_pb2.UserActivityEvent
)

# fullmatch, not match with "$": "$" also matches before a trailing newline.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"
# Field paths of each kind's envelope, e.g. "attempt.envelope.user_id" (built once, not
# per event: validation runs for every event ingest takes).
_ENVELOPE_FIELDS = {
    kind: {"envelope": f"{kind}.envelope"}
    | {
        name: f"{kind}.envelope.{name}"
        for name in (
            "event_id",
            "tenant_id",
            "user_id",
            "occurred_at",
            "session_id",
            "source.app",
            "source.platform",
            "source.version",
        )
    }
    for kind in EVENT_KINDS
}
# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_S = -62_135_596_800
_MAX_TIMESTAMP_S = 253_402_300_799


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds validation enforces; built from settings once per app."""

    max_text_chars: int
    max_source_code_chars: int
    max_future_skew: timedelta
    max_event_age: timedelta
    max_attributes: int = MAX_ATTRIBUTES
    max_user_id_chars: int = MAX_USER_ID_CHARS

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Limits from ``ingest_max_*`` settings."""
        return cls(
            max_text_chars=settings.ingest_max_text_chars,
            max_source_code_chars=settings.ingest_max_source_code_chars,
            max_future_skew=timedelta(seconds=settings.ingest_max_future_skew_s),
            max_event_age=timedelta(days=settings.ingest_max_event_age_days),
        )


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``field`` is a path inside the event, ``reason`` says why in words."""

    field: str
    reason: str


def event_kind(event: ingest_pb2.LearningEvent) -> str | None:
    """The oneof member set in ``event`` ("attempt", ...), or None when none is."""
    return event.WhichOneof("event")


def envelope_of(event: ingest_pb2.LearningEvent) -> envelope_pb2.Envelope | None:
    """The envelope of whichever event kind is set, or None."""
    kind = event_kind(event)
    if kind is None:
        return None
    body: EventMessage = getattr(event, kind)
    return body.envelope


def canonical_event_id(event_id: str) -> str:
    """The form ingest publishes and deduplicates by: lower-case 8-4-4-4-12 hex."""
    return event_id.lower()


def validate_event(
    event: ingest_pb2.LearningEvent,
    *,
    tenant_id: str,
    now: datetime,
    limits: Limits,
    window: tuple[float, float] | None = None,
) -> list[Violation]:
    """Every rule ``event`` breaks, in field order; an empty list means valid.

    ``tenant_id`` is the caller's tenant (from its API key); ``now`` is the UTC
    time of receipt that bounds ``occurred_at``; ``window`` is
    ``occurred_window(now, limits)`` when the caller computed it once for a batch.

    An attempt is first checked by :func:`_attempt_surely_valid`, one flat function
    that answers True only for an event that breaks no rule; anything else (and every
    other kind) goes through the rules one by one, which name each violation.
    """
    kind = event_kind(event)
    if kind is None:
        return [
            Violation(
                "event",
                "no event kind is set; set exactly one of " + ", ".join(EVENT_KINDS),
            )
        ]
    body: EventMessage = getattr(event, kind)
    surely_valid = _SURELY_VALID.get(kind)
    if surely_valid is not None and surely_valid(
        body, tenant_id, window or occurred_window(now, limits), limits
    ):
        return []
    violations = list(_envelope_rules(kind, body, tenant_id=tenant_id, now=now, limits=limits))
    violations.extend(_kind_rules(event, kind, limits))
    violations.extend(_identifier_rules(kind, body))
    return violations


def stamp_event(event: ingest_pb2.LearningEvent, *, tenant_id: str, received_at: datetime) -> None:
    """Set what ingest owns on a valid event: tenant, receipt time, canonical event_id."""
    envelope = envelope_of(event)
    if envelope is None:
        raise ValueError("stamp_event needs an event with its kind set")
    stamp_envelope(envelope, tenant_id=tenant_id, received_at=receipt_timestamp(received_at))


def receipt_timestamp(received_at: datetime) -> Timestamp:
    """``received_at`` as the envelope's Timestamp (UTC); built once per batch."""
    timestamp = Timestamp()
    timestamp.FromDatetime(received_at.astimezone(UTC))
    return timestamp


def stamp_envelope(
    envelope: envelope_pb2.Envelope, *, tenant_id: str, received_at: Timestamp
) -> None:
    """:func:`stamp_event` on the envelope itself, with the receipt time already converted."""
    envelope.tenant_id = tenant_id
    envelope.event_id = canonical_event_id(envelope.event_id)
    envelope.received_at.CopyFrom(received_at)


def occurred_window(now: datetime, limits: Limits) -> tuple[float, float]:
    """Epoch seconds strictly between which ``occurred_at`` surely passes the age and
    skew rules at ``now`` (a millisecond inside each bound, so float rounding never
    lets the quick check pass an event the exact rule refuses)."""
    now_s = now.timestamp()
    return (
        now_s - limits.max_event_age.total_seconds() + 1e-3,
        now_s + limits.max_future_skew.total_seconds() - 1e-3,
    )


# --- the quick check of the common case -------------------------------------------

_ATTEMPT_CONTEXTS = frozenset(attempt_pb2.AttemptContext.DESCRIPTOR.values_by_number)


def _envelope_surely_valid(
    envelope: envelope_pb2.Envelope, tenant_id: str, window: tuple[float, float], limits: Limits
) -> bool:
    # The rules of _envelope_rules, flat: no generator, no Violation, no field path.
    event_id = envelope.event_id
    if len(event_id) != 36 or event_id == _NIL_UUID or not _UUID.fullmatch(event_id):
        return False
    tenant = envelope.tenant_id
    if tenant and tenant != tenant_id:
        return False
    user_id = envelope.user_id
    if len(user_id) > limits.max_user_id_chars or not user_id.strip():
        return False
    if not envelope.HasField("occurred_at"):
        return False
    occurred_at = envelope.occurred_at
    seconds, nanos = occurred_at.seconds, occurred_at.nanos
    if not (
        0 <= nanos < 1_000_000_000
        and _MIN_TIMESTAMP_S <= seconds <= _MAX_TIMESTAMP_S
        and window[0] < seconds + nanos * 1e-9 < window[1]
    ):
        return False
    max_chars = limits.max_text_chars
    source = envelope.source  # an unset source reads as empty strings
    return (
        len(envelope.session_id) <= max_chars
        and len(source.app) <= max_chars
        and len(source.platform) <= max_chars
        and len(source.version) <= max_chars
    )


def _attempt_surely_valid(
    attempt: attempt_pb2.AttemptEvent,
    tenant_id: str,
    window: tuple[float, float],
    limits: Limits,
) -> bool:
    """True only if ``attempt`` breaks no rule of :func:`validate_event` (False says
    nothing: the rules then run one by one). Ingest's hot path: an attempt's checks in
    one flat function instead of a generator per rule (~3x less CPU per event)."""
    if not attempt.HasField("envelope") or not _envelope_surely_valid(
        attempt.envelope, tenant_id, window, limits
    ):
        return False
    max_chars = limits.max_text_chars
    item_id = attempt.item_id
    if len(item_id) > max_chars or not item_id.strip():
        return False
    skill_ids = attempt.skill_ids
    if not 0 < len(skill_ids) <= MAX_SKILL_IDS:
        return False
    for skill_id in skill_ids:
        if len(skill_id) > max_chars or not skill_id.strip():
            return False
    # NaN fails both comparisons.
    if attempt.HasField("score") and not 0.0 <= attempt.score <= 1.0:
        return False
    if (
        len(attempt.response) > max_chars
        or attempt.item_version < 0
        or attempt.response_time_ms < 0
        or attempt.hint_count < 0
        or attempt.attempt_number < 0
        or attempt.context not in _ATTEMPT_CONTEXTS
    ):
        return False
    return JOINED_IDENTIFIERS["attempt"](attempt).isprintable()


# --- envelope ------------------------------------------------------------------


def _envelope_rules(
    kind: str,
    body: EventMessage,
    *,
    tenant_id: str,
    now: datetime,
    limits: Limits,
) -> Iterator[Violation]:
    fields = _ENVELOPE_FIELDS[kind]
    if not body.HasField("envelope"):
        yield Violation(fields["envelope"], "missing; every event needs an envelope")
        return
    envelope = body.envelope
    yield from _event_id_rules(fields["event_id"], envelope.event_id)
    if envelope.tenant_id and envelope.tenant_id != tenant_id:
        yield Violation(
            fields["tenant_id"],
            "differs from the tenant of the API key; leave it empty, ingest sets it",
        )
    yield from _user_id_rules(fields["user_id"], envelope.user_id, limits)
    yield from _occurred_at_rules(fields["occurred_at"], envelope, now=now, limits=limits)
    yield from _text(fields["session_id"], envelope.session_id, limits.max_text_chars)
    if envelope.HasField("source"):
        source = envelope.source
        for name in ("app", "platform", "version"):
            yield from _text(fields[f"source.{name}"], getattr(source, name), limits.max_text_chars)


def _event_id_rules(field: str, event_id: str) -> Iterator[Violation]:
    if not event_id:
        yield Violation(field, "missing; send a client-generated UUID (the key for retries)")
    elif not _UUID.fullmatch(event_id):
        yield Violation(field, "not a UUID; expected 8-4-4-4-12 hex digits")
    elif event_id == _NIL_UUID:
        yield Violation(field, "the nil UUID is not an event id; generate a random UUID")


def _user_id_rules(field: str, user_id: str, limits: Limits) -> Iterator[Violation]:
    if not user_id.strip():
        yield Violation(field, "missing")
        return
    if len(user_id) > limits.max_user_id_chars:
        yield Violation(field, f"has {len(user_id)} characters; at most {limits.max_user_id_chars}")
    # Its characters: _identifier_rules, like every identifier.


def _occurred_at_rules(
    field: str, envelope: envelope_pb2.Envelope, *, now: datetime, limits: Limits
) -> Iterator[Violation]:
    if not envelope.HasField("occurred_at"):
        yield Violation(field, "missing; send when the event happened (UTC)")
        return
    occurred_at = _as_datetime(envelope.occurred_at)
    if occurred_at is None:
        yield Violation(field, "not a valid timestamp (years 1 to 9999, nanos in [0, 1e9))")
        return
    ahead = occurred_at - now
    if ahead > limits.max_future_skew:
        yield Violation(
            field,
            f"lies {ahead.total_seconds():.0f} s in the future; the allowed clock skew is "
            f"{limits.max_future_skew.total_seconds():.0f} s",
        )
    elif now - occurred_at > limits.max_event_age:
        yield Violation(field, f"is more than {limits.max_event_age.days} days in the past")


def _as_datetime(timestamp: Timestamp) -> datetime | None:
    if not _MIN_TIMESTAMP_S <= timestamp.seconds <= _MAX_TIMESTAMP_S:
        return None
    if not 0 <= timestamp.nanos < 1_000_000_000:
        return None
    return timestamp.ToDatetime(tzinfo=UTC)


# --- per kind ------------------------------------------------------------------


def _attempt_rules(attempt: attempt_pb2.AttemptEvent, limits: Limits) -> Iterator[Violation]:
    yield from _required_text("attempt.item_id", attempt.item_id, limits.max_text_chars)
    yield from _not_negative("attempt.item_version", attempt.item_version, "0 means unknown")
    yield from _skill_ids("attempt.skill_ids", attempt.skill_ids, limits)
    if attempt.HasField("score"):
        yield from _probability("attempt.score", attempt.score)
    yield from _text("attempt.response", attempt.response, limits.max_text_chars)
    yield from _not_negative("attempt.response_time_ms", attempt.response_time_ms)
    yield from _not_negative("attempt.hint_count", attempt.hint_count)
    yield from _not_negative(
        "attempt.attempt_number", attempt.attempt_number, "1 is the first try, 0 means unknown"
    )
    yield from _enum("attempt.context", attempt.context, attempt_pb2.AttemptContext.DESCRIPTOR)


def _code_submission_rules(
    submission: code_submission_pb2.CodeSubmissionEvent, limits: Limits
) -> Iterator[Violation]:
    prefix = "code_submission"
    yield from _required_text(f"{prefix}.item_id", submission.item_id, limits.max_text_chars)
    yield from _not_negative(f"{prefix}.item_version", submission.item_version, "0 means unknown")
    yield from _skill_ids(f"{prefix}.skill_ids", submission.skill_ids, limits)
    yield from _text(f"{prefix}.language", submission.language, limits.max_text_chars)
    yield from _text(f"{prefix}.source", submission.source, limits.max_source_code_chars)
    yield from _not_negative(f"{prefix}.tests_passed", submission.tests_passed)
    yield from _not_negative(f"{prefix}.tests_total", submission.tests_total)
    if submission.tests_passed > submission.tests_total >= 0:
        yield Violation(
            f"{prefix}.tests_passed",
            f"{submission.tests_passed} passed exceeds tests_total {submission.tests_total}",
        )
    yield from _not_negative(f"{prefix}.runtime_ms", submission.runtime_ms)


def _session_rules(session: session_pb2.SessionEvent, limits: Limits) -> Iterator[Violation]:
    if session.HasField("envelope") and not session.envelope.session_id:
        yield Violation("session.envelope.session_id", "missing; it names the session")
    yield from _enum(
        "session.action",
        session.action,
        session_pb2.SessionAction.DESCRIPTOR,
        required=True,
    )
    yield from _enum("session.strategy", session.strategy, common_pb2.SessionStrategy.DESCRIPTOR)
    yield from _not_negative("session.duration_ms", session.duration_ms)
    yield from _text("session.device_id", session.device_id, limits.max_text_chars)


def _placement_rules(
    placement: placement_pb2.PlacementEvent, limits: Limits
) -> Iterator[Violation]:
    yield from _text("placement.placement_id", placement.placement_id, limits.max_text_chars)
    if not math.isfinite(placement.ability):
        yield Violation("placement.ability", f"must be a finite logit, got {placement.ability}")
    if not (math.isfinite(placement.ability_se) and placement.ability_se > 0):
        yield Violation(
            "placement.ability_se", f"must be finite and > 0, got {placement.ability_se}"
        )
    yield from _not_negative("placement.items_administered", placement.items_administered)
    for i, estimate in enumerate(placement.skill_estimates):
        field = f"placement.skill_estimates[{i}]"
        yield from _required_text(f"{field}.skill_id", estimate.skill_id, limits.max_text_chars)
        yield from _probability(f"{field}.p_mastery", estimate.p_mastery)


def _activity_rules(
    activity: activity_pb2.UserActivityEvent, limits: Limits
) -> Iterator[Violation]:
    yield from _enum(
        "activity.kind", activity.kind, activity_pb2.ActivityKind.DESCRIPTOR, required=True
    )
    yield from _text("activity.resource_id", activity.resource_id, limits.max_text_chars)
    yield from _not_negative("activity.duration_ms", activity.duration_ms)
    yield from _text("activity.device_id", activity.device_id, limits.max_text_chars)
    if len(activity.attributes) > limits.max_attributes:
        yield Violation(
            "activity.attributes",
            f"has {len(activity.attributes)} pairs; at most {limits.max_attributes}",
        )
    for key in sorted(activity.attributes):
        # The key goes into the path quoted and shortened, so a hostile key cannot
        # make the answer (or a metrics label) huge.
        field = f'activity.attributes["{key[:40]}"]'
        if not key:
            yield Violation(field, "attribute keys must not be empty")
        yield from _text(field, key, limits.max_text_chars, what="key")
        yield from _text(field, activity.attributes[key], limits.max_text_chars)


def _kind_rules(event: ingest_pb2.LearningEvent, kind: str, limits: Limits) -> Iterator[Violation]:
    if kind == "attempt":
        return _attempt_rules(event.attempt, limits)
    if kind == "code_submission":
        return _code_submission_rules(event.code_submission, limits)
    if kind == "session":
        return _session_rules(event.session, limits)
    if kind == "placement":
        return _placement_rules(event.placement, limits)
    return _activity_rules(event.activity, limits)


# --- building blocks -----------------------------------------------------------


def _text(field: str, value: str, max_chars: int, *, what: str = "value") -> Iterator[Violation]:
    if len(value) > max_chars:
        yield Violation(field, f"{what} has {len(value)} characters; at most {max_chars}")


def _required_text(field: str, value: str, max_chars: int) -> Iterator[Violation]:
    if not value.strip():
        yield Violation(field, "missing")
    else:
        yield from _text(field, value, max_chars)


def _not_negative(field: str, value: int, note: str = "") -> Iterator[Violation]:
    if value < 0:
        suffix = f" ({note})" if note else ""
        yield Violation(field, f"must be >= 0, got {value}{suffix}")


def _probability(field: str, value: float) -> Iterator[Violation]:
    if math.isnan(value):
        yield Violation(field, "is NaN; send a number in [0, 1]")
    elif not 0.0 <= value <= 1.0:
        yield Violation(field, f"must lie in [0, 1], got {value}")


def _skill_ids(field: str, ids: Sequence[str], limits: Limits) -> Iterator[Violation]:
    if not ids:
        yield Violation(field, "empty; name at least one skill the item exercises")
    if len(ids) > MAX_SKILL_IDS:
        yield Violation(field, f"has {len(ids)} skills; at most {MAX_SKILL_IDS}")
        return
    for i, skill_id in enumerate(ids):
        if len(skill_id) > limits.max_text_chars or not skill_id.strip():
            # The path is built only for an id that breaks a rule (most never do).
            yield from _required_text(f"{field}[{i}]", skill_id, limits.max_text_chars)


def _enum(
    field: str, value: int, enum: EnumDescriptor, *, required: bool = False
) -> Iterator[Violation]:
    known = enum.values_by_number.get(value)
    if known is None:
        names = ", ".join(v.name for v in enum.values if v.number != 0)
        yield Violation(field, f"unknown {enum.name} value {value}; known: {names}")
    elif required and value == 0:
        names = ", ".join(v.name for v in enum.values if v.number != 0)
        yield Violation(field, f"required; one of {names}")


# --- identifiers (found by ingest.identifiers) --------------------------------------


def _identifier_rules(kind: str, body: EventMessage) -> Iterator[Violation]:
    # Hot path: one C-level isprintable over all of the event's identifiers joined;
    # fields are looked at one by one only when that finds a bad character.
    if JOINED_IDENTIFIERS[kind](body).isprintable():
        return
    for field in IDENTIFIER_FIELDS[kind]:
        for path, value in field.located(body):
            if value.isprintable():
                continue
            position, char = next((i, c) for i, c in enumerate(value) if not c.isprintable())
            yield Violation(
                path,
                f"contains U+{ord(char):04X} ({unicodedata.category(char)}) at position "
                f"{position}; {IDENTIFIER_RULE}",
            )


# The quick check of each kind that has one (see validate_event).
_SURELY_VALID: dict[str, Callable[[Any, str, tuple[float, float], Limits], bool]] = {
    "attempt": _attempt_surely_valid,
}

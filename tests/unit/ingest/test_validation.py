"""Every validation rule of ingest/validation.py, on both sides of each boundary.

Each case starts from a valid event of one kind, changes one thing, and checks
that exactly the expected field is named (or that nothing is, on the valid side).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest import validation
from ingest.identifiers import FREE_TEXT_FIELDS, IDENTIFIER_FIELDS, IdentifierField
from ingest.validation import (
    EVENT_KINDS,
    MAX_SKILL_IDS,
    Limits,
    Violation,
    envelope_of,
    stamp_event,
    validate_event,
)
from learnstream.events.v1 import (
    activity_pb2,
    attempt_pb2,
    code_submission_pb2,
    envelope_pb2,
    ingest_pb2,
    placement_pb2,
    session_pb2,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TENANT = "school-1"
LIMITS = Limits(
    max_text_chars=10,
    max_source_code_chars=20,
    max_future_skew=timedelta(seconds=300),
    max_event_age=timedelta(days=30),
)
EVENT_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def envelope(**changes: object) -> envelope_pb2.Envelope:
    env = envelope_pb2.Envelope(event_id=EVENT_ID, user_id="learner-1", session_id="s1")
    env.occurred_at.FromDatetime(NOW - timedelta(minutes=1))
    for name, value in changes.items():
        setattr(env, name, value)
    return env


def valid(kind: str) -> ingest_pb2.LearningEvent:
    if kind == "attempt":
        return ingest_pb2.LearningEvent(
            attempt=attempt_pb2.AttemptEvent(
                envelope=envelope(),
                item_id="item-1",
                skill_ids=["sk-1"],
                correct=True,
                score=1.0,
                response_time_ms=1200,
                attempt_number=1,
                context=attempt_pb2.ATTEMPT_CONTEXT_PRACTICE,
            )
        )
    if kind == "code_submission":
        return ingest_pb2.LearningEvent(
            code_submission=code_submission_pb2.CodeSubmissionEvent(
                envelope=envelope(),
                item_id="ex-1",
                skill_ids=["loops"],
                language="python",
                source="print(1)",
                tests_passed=3,
                tests_total=4,
                runtime_ms=15,
            )
        )
    if kind == "session":
        return ingest_pb2.LearningEvent(
            session=session_pb2.SessionEvent(
                envelope=envelope(), action=session_pb2.SESSION_ACTION_STARTED
            )
        )
    if kind == "placement":
        return ingest_pb2.LearningEvent(
            placement=placement_pb2.PlacementEvent(
                envelope=envelope(),
                placement_id="p-1",
                ability=0.3,
                ability_se=0.4,
                items_administered=12,
                skill_estimates=[placement_pb2.SkillEstimate(skill_id="sk-1", p_mastery=0.7)],
            )
        )
    return ingest_pb2.LearningEvent(
        activity=activity_pb2.UserActivityEvent(
            envelope=envelope(),
            kind=activity_pb2.ACTIVITY_KIND_PAGE_VIEW,
            attributes={"page": "home"},
        )
    )


def fields(event: ingest_pb2.LearningEvent) -> list[str]:
    return [v.field for v in validate_event(event, tenant_id=TENANT, now=NOW, limits=LIMITS)]


KINDS = ["attempt", "code_submission", "session", "placement", "activity"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_valid_event_of_each_kind_passes(kind: str) -> None:
    assert fields(valid(kind)) == []


def test_an_event_without_a_kind_is_rejected() -> None:
    violations = validate_event(
        ingest_pb2.LearningEvent(), tenant_id=TENANT, now=NOW, limits=LIMITS
    )
    assert violations == [Violation("event", violations[0].reason)]
    assert "exactly one of" in violations[0].reason


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_envelope_is_rejected(kind: str) -> None:
    event = valid(kind)
    getattr(event, kind).ClearField("envelope")
    assert fields(event)[0] == f"{kind}.envelope"


Mutation = Callable[[envelope_pb2.Envelope], None]


def _set(name: str, value: object) -> Mutation:
    return lambda env: setattr(env, name, value)


def _occurred(delta: timedelta) -> Mutation:
    return lambda env: env.occurred_at.FromDatetime(NOW + delta)


ENVELOPE_CASES: list[tuple[str, Mutation, str | None]] = [
    ("event_id missing", _set("event_id", ""), "event_id"),
    ("event_id not a uuid", _set("event_id", "abc"), "event_id"),
    ("event_id without dashes", _set("event_id", EVENT_ID.replace("-", "")), "event_id"),
    ("event_id nil uuid", _set("event_id", "00000000-0000-0000-0000-000000000000"), "event_id"),
    ("event_id upper case is a uuid", _set("event_id", EVENT_ID.upper()), None),
    ("tenant_id empty is fine", _set("tenant_id", ""), None),
    ("tenant_id same as key", _set("tenant_id", TENANT), None),
    ("tenant_id other tenant", _set("tenant_id", "school-2"), "tenant_id"),
    ("user_id missing", _set("user_id", ""), "user_id"),
    ("user_id blank", _set("user_id", "   "), "user_id"),
    ("user_id 128 chars", _set("user_id", "u" * 128), None),
    ("user_id 129 chars", _set("user_id", "u" * 129), "user_id"),
    ("user_id newline", _set("user_id", "a\nb"), "user_id"),
    ("user_id NUL", _set("user_id", "a\x00b"), "user_id"),
    ("user_id DEL", _set("user_id", "a\x7fb"), "user_id"),
    ("user_id non-ascii letters", _set("user_id", "Zoë-学生"), None),
    ("occurred_at missing", lambda env: env.ClearField("occurred_at"), "occurred_at"),
    ("occurred_at at skew", _occurred(timedelta(seconds=300)), None),
    ("occurred_at past skew", _occurred(timedelta(seconds=301)), "occurred_at"),
    ("occurred_at at max age", _occurred(-timedelta(days=30)), None),
    ("occurred_at past max age", _occurred(-timedelta(days=30, seconds=1)), "occurred_at"),
    ("occurred_at bad nanos", lambda env: setattr(env.occurred_at, "nanos", -1), "occurred_at"),
    (
        "occurred_at beyond year 9999",
        lambda env: setattr(env.occurred_at, "seconds", 253_402_300_800),
        "occurred_at",
    ),
    ("session_id at text cap", _set("session_id", "s" * 10), None),
    ("session_id over text cap", _set("session_id", "s" * 11), "session_id"),
    ("source.app over text cap", lambda env: setattr(env.source, "app", "a" * 11), "source.app"),
    ("source.version at cap", lambda env: setattr(env.source, "version", "1" * 10), None),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [c[1:] for c in ENVELOPE_CASES], ids=[c[0] for c in ENVELOPE_CASES]
)
@pytest.mark.parametrize("kind", ["attempt", "activity"])
def test_envelope_rules(kind: str, mutate: Mutation, field: str | None) -> None:
    event = valid(kind)
    mutate(getattr(event, kind).envelope)
    expected = [] if field is None else [f"{kind}.envelope.{field}"]
    assert fields(event) == expected


EventMutation = Callable[[ingest_pb2.LearningEvent], None]


def _on(kind: str, name: str, value: object) -> EventMutation:
    return lambda event: setattr(getattr(event, kind), name, value)


def _clear(kind: str, name: str) -> EventMutation:
    return lambda event: getattr(event, kind).ClearField(name)


KIND_CASES: list[tuple[str, str, EventMutation, str | None]] = [
    # attempt
    ("attempt", "item_id missing", _on("attempt", "item_id", ""), "item_id"),
    ("attempt", "item_id over cap", _on("attempt", "item_id", "i" * 11), "item_id"),
    ("attempt", "item_version 0 unknown", _on("attempt", "item_version", 0), None),
    ("attempt", "item_version -1", _on("attempt", "item_version", -1), "item_version"),
    ("attempt", "skill_ids empty", _clear("attempt", "skill_ids"), "skill_ids"),
    (
        "attempt",
        "skill id blank",
        lambda e: e.attempt.skill_ids.append(""),
        "skill_ids[1]",
    ),
    (
        "attempt",
        "skills at cap",
        lambda e: e.attempt.skill_ids.extend(f"s{i}" for i in range(MAX_SKILL_IDS - 1)),
        None,
    ),
    (
        "attempt",
        "skills over cap",
        lambda e: e.attempt.skill_ids.extend(f"s{i}" for i in range(MAX_SKILL_IDS)),
        "skill_ids",
    ),
    ("attempt", "score 0", _on("attempt", "score", 0.0), None),
    ("attempt", "score 1", _on("attempt", "score", 1.0), None),
    ("attempt", "score unset", _clear("attempt", "score"), None),
    ("attempt", "score below 0", _on("attempt", "score", -1e-9), "score"),
    ("attempt", "score above 1", _on("attempt", "score", 1.000001), "score"),
    ("attempt", "score NaN", _on("attempt", "score", math.nan), "score"),
    ("attempt", "score inf", _on("attempt", "score", math.inf), "score"),
    ("attempt", "response at cap", _on("attempt", "response", "r" * 10), None),
    ("attempt", "response over cap", _on("attempt", "response", "r" * 11), "response"),
    ("attempt", "response_time 0", _on("attempt", "response_time_ms", 0), None),
    (
        "attempt",
        "response_time -1",
        _on("attempt", "response_time_ms", -1),
        "response_time_ms",
    ),
    ("attempt", "hint_count 0", _on("attempt", "hint_count", 0), None),
    ("attempt", "hint_count -1", _on("attempt", "hint_count", -1), "hint_count"),
    ("attempt", "attempt_number 0 unknown", _on("attempt", "attempt_number", 0), None),
    (
        "attempt",
        "attempt_number -1",
        _on("attempt", "attempt_number", -1),
        "attempt_number",
    ),
    ("attempt", "context unspecified", _on("attempt", "context", 0), None),
    ("attempt", "context highest known", _on("attempt", "context", 5), None),
    ("attempt", "context unknown", _on("attempt", "context", 6), "context"),
    # code submission
    ("code_submission", "item_id missing", _on("code_submission", "item_id", ""), "item_id"),
    ("code_submission", "skills empty", _clear("code_submission", "skill_ids"), "skill_ids"),
    ("code_submission", "source at cap", _on("code_submission", "source", "x" * 20), None),
    ("code_submission", "source over cap", _on("code_submission", "source", "x" * 21), "source"),
    (
        "code_submission",
        "language over cap",
        _on("code_submission", "language", "l" * 11),
        "language",
    ),
    ("code_submission", "passed == total", _on("code_submission", "tests_passed", 4), None),
    (
        "code_submission",
        "passed > total",
        _on("code_submission", "tests_passed", 5),
        "tests_passed",
    ),
    (
        "code_submission",
        "passed negative",
        _on("code_submission", "tests_passed", -1),
        "tests_passed",
    ),
    ("code_submission", "total negative", _on("code_submission", "tests_total", -1), "tests_total"),
    ("code_submission", "runtime 0", _on("code_submission", "runtime_ms", 0), None),
    ("code_submission", "runtime -1", _on("code_submission", "runtime_ms", -1), "runtime_ms"),
    # session
    ("session", "action unspecified", _on("session", "action", 0), "action"),
    ("session", "action highest known", _on("session", "action", 3), None),
    ("session", "action unknown", _on("session", "action", 4), "action"),
    ("session", "strategy unspecified", _on("session", "strategy", 0), None),
    ("session", "strategy unknown", _on("session", "strategy", 99), "strategy"),
    ("session", "duration -1", _on("session", "duration_ms", -1), "duration_ms"),
    ("session", "duration 0", _on("session", "duration_ms", 0), None),
    (
        "session",
        "session_id missing",
        lambda e: setattr(e.session.envelope, "session_id", ""),
        "envelope.session_id",
    ),
    ("session", "device_id over cap", _on("session", "device_id", "d" * 11), "device_id"),
    # placement
    ("placement", "ability NaN", _on("placement", "ability", math.nan), "ability"),
    ("placement", "ability inf", _on("placement", "ability", -math.inf), "ability"),
    ("placement", "ability far but finite", _on("placement", "ability", -40.0), None),
    ("placement", "ability_se 0", _on("placement", "ability_se", 0.0), "ability_se"),
    ("placement", "ability_se tiny", _on("placement", "ability_se", 1e-12), None),
    ("placement", "ability_se inf", _on("placement", "ability_se", math.inf), "ability_se"),
    ("placement", "ability_se NaN", _on("placement", "ability_se", math.nan), "ability_se"),
    (
        "placement",
        "items_administered -1",
        _on("placement", "items_administered", -1),
        "items_administered",
    ),
    (
        "placement",
        "p_mastery 1",
        lambda e: setattr(e.placement.skill_estimates[0], "p_mastery", 1.0),
        None,
    ),
    (
        "placement",
        "p_mastery above 1",
        lambda e: setattr(e.placement.skill_estimates[0], "p_mastery", 1.01),
        "skill_estimates[0].p_mastery",
    ),
    (
        "placement",
        "p_mastery NaN",
        lambda e: setattr(e.placement.skill_estimates[0], "p_mastery", math.nan),
        "skill_estimates[0].p_mastery",
    ),
    (
        "placement",
        "skill estimate without skill",
        lambda e: setattr(e.placement.skill_estimates[0], "skill_id", ""),
        "skill_estimates[0].skill_id",
    ),
    # activity
    ("activity", "kind unspecified", _on("activity", "kind", 0), "kind"),
    ("activity", "kind unknown", _on("activity", "kind", 7), "kind"),
    ("activity", "kind highest known", _on("activity", "kind", 6), None),
    ("activity", "duration -1", _on("activity", "duration_ms", -1), "duration_ms"),
    (
        "activity",
        "20 attributes",
        lambda e: e.activity.attributes.update({f"k{i}": "v" for i in range(19)}),
        None,
    ),
    (
        "activity",
        "21 attributes",
        lambda e: e.activity.attributes.update({f"k{i}": "v" for i in range(20)}),
        "attributes",
    ),
    (
        "activity",
        "attribute value over cap",
        lambda e: e.activity.attributes.update({"page": "p" * 11}),
        'attributes["page"]',
    ),
    (
        "activity",
        "attribute key over cap",
        lambda e: e.activity.attributes.update({"k" * 11: "v"}),
        f'attributes["{"k" * 11}"]',
    ),
    (
        "activity",
        "attribute key empty",
        lambda e: e.activity.attributes.update({"": "v"}),
        'attributes[""]',
    ),
    ("activity", "resource_id over cap", _on("activity", "resource_id", "r" * 11), "resource_id"),
]


@pytest.mark.parametrize(
    ("kind", "mutate", "field"),
    [(c[0], c[2], c[3]) for c in KIND_CASES],
    ids=[f"{c[0]}: {c[1]}" for c in KIND_CASES],
)
def test_kind_rules(kind: str, mutate: EventMutation, field: str | None) -> None:
    event = valid(kind)
    mutate(event)
    expected = [] if field is None else [f"{kind}.{field}"]
    assert fields(event) == expected


def test_every_broken_rule_is_reported_in_field_order() -> None:
    event = valid("attempt")
    event.attempt.envelope.user_id = ""
    event.attempt.score = 2.0
    event.attempt.hint_count = -3
    assert fields(event) == [
        "attempt.envelope.user_id",
        "attempt.score",
        "attempt.hint_count",
    ]


def test_reasons_say_what_is_wrong() -> None:
    event = valid("attempt")
    event.attempt.score = 1.5
    (violation,) = validate_event(event, tenant_id=TENANT, now=NOW, limits=LIMITS)
    assert "[0, 1]" in violation.reason
    assert "1.5" in violation.reason


def test_stamp_sets_tenant_receipt_time_and_canonical_event_id() -> None:
    event = valid("session")
    envelope_of(event).event_id = EVENT_ID.upper()  # type: ignore[union-attr]
    envelope_of(event).received_at.FromDatetime(NOW - timedelta(days=9))  # type: ignore[union-attr]
    received = NOW + timedelta(seconds=1)
    stamp_event(event, tenant_id=TENANT, received_at=received)
    stamped = event.session.envelope
    assert stamped.tenant_id == TENANT
    assert stamped.event_id == EVENT_ID
    assert stamped.received_at.ToDatetime(tzinfo=UTC) == received


def test_limits_come_from_settings() -> None:
    from learnstream.settings import Settings

    settings = Settings(
        ingest_max_text_chars=7,
        ingest_max_source_code_chars=70,
        ingest_max_future_skew_s=9,
        ingest_max_event_age_days=3,
    )
    limits = Limits.from_settings(settings)
    assert (limits.max_text_chars, limits.max_source_code_chars) == (7, 70)
    assert limits.max_future_skew == timedelta(seconds=9)
    assert limits.max_event_age == timedelta(days=3)


# --- identifiers (attack review L7) ---------------------------------------------

# One of each class the identifier rule refuses (a lone surrogate, Cs, cannot even be
# put into a protobuf string); and characters it must keep allowing.
REFUSED_CHARACTERS = {
    "NUL": "\x00",
    "escape (Cc)": "\x1b",
    "DEL (Cc)": "\x7f",
    "right-to-left override (Cf)": "\u202e",
    "zero-width space (Cf)": "\u200b",
    "private use (Co)": "\ue000",
    "line separator (Zl)": "\u2028",
    "no-break space (Zs)": "\u00a0",
}
IDENTIFIERS = [field for kind in EVENT_KINDS for field in IDENTIFIER_FIELDS[kind]]


def _put_identifier(event: ingest_pb2.LearningEvent, pattern: str, value: str) -> str:
    """Set the identifier ``pattern`` (with [] or {}) of ``event`` to ``value``; its path."""
    head, _, rest = pattern.partition(".")
    message: Any = getattr(event, head)
    names = rest.split(".")
    concrete = [head]
    for name in names[:-1]:
        if name.endswith("[]"):
            message = getattr(message, name[:-2])[0]
            concrete.append(f"{name[:-2]}[0]")
        else:
            message = getattr(message, name)
            concrete.append(name)
    last = names[-1]
    if last.endswith("[]"):
        getattr(message, last[:-2])[0] = value
        concrete.append(f"{last[:-2]}[0]")
    elif last.endswith("{}"):
        getattr(message, last[:-2])[value] = "v"
        concrete.append(f'{last[:-2]}["{ascii(value)[1:-1]}"]')
    else:
        # event_id and tenant_id keep their shape around the bad character.
        base = {"event_id": EVENT_ID[1:], "tenant_id": TENANT}.get(last, "id")
        setattr(message, last, value + base)
        concrete.append(last)
    return ".".join(concrete)


def test_identifiers_cover_exactly_the_event_kinds() -> None:
    # ingest.identifiers takes the kinds from the LearningEvent oneof; validation names them.
    assert tuple(IDENTIFIER_FIELDS) == EVENT_KINDS


def test_identifiers_come_from_every_string_field_but_free_text() -> None:
    paths = {field.path for field in IDENTIFIERS}
    for kind in EVENT_KINDS:
        for name in ("event_id", "tenant_id", "user_id", "session_id", "source.app"):
            assert f"{kind}.envelope.{name}" in paths
    assert {
        "attempt.item_id",
        "attempt.skill_ids[]",
        "code_submission.item_id",
        "code_submission.skill_ids[]",
        "code_submission.language",
        "session.device_id",
        "placement.placement_id",
        "placement.skill_estimates[].skill_id",
        "activity.resource_id",
        "activity.device_id",
        "activity.attributes{}",
    } <= paths
    assert not paths & FREE_TEXT_FIELDS
    assert len(paths) == 46


@pytest.mark.parametrize("character", REFUSED_CHARACTERS.values(), ids=REFUSED_CHARACTERS.keys())
@pytest.mark.parametrize("identifier", IDENTIFIERS, ids=lambda f: f.path)
def test_ingest_rejects_control_characters_in_every_identifier(
    identifier: IdentifierField, character: str
) -> None:
    event = valid(identifier.kind)
    path = _put_identifier(event, identifier.path, character)
    violations = validate_event(event, tenant_id=TENANT, now=NOW, limits=LIMITS)
    refused = [v for v in violations if "printable" in v.reason]
    assert [v.field for v in refused] == [path]
    assert f"U+{ord(character):04X}" in refused[0].reason
    assert "position 0" in refused[0].reason


@pytest.mark.parametrize("value", ["Box Plot", "Équations", "数学", "a-b_c.d/e"])
def test_printable_identifiers_pass(value: str) -> None:
    event = valid("attempt")
    event.attempt.skill_ids[0] = value
    event.attempt.item_id = value
    assert fields(event) == []


def test_free_text_may_hold_control_characters() -> None:
    event = valid("attempt")
    event.attempt.response = "a\tb\n"
    assert fields(event) == []


def test_an_event_id_with_a_trailing_newline_is_not_a_uuid() -> None:
    event = valid("attempt")
    event.attempt.envelope.event_id = EVENT_ID + "\n"
    reasons = [v.reason for v in validate_event(event, tenant_id=TENANT, now=NOW, limits=LIMITS)]
    assert any("not a UUID" in r for r in reasons)


# --- the quick check of attempts (validation._attempt_surely_valid) ----------------


def _attempt_mutations() -> list[tuple[str, Callable[[attempt_pb2.AttemptEvent], None]]]:
    """One change per rule an attempt can break (and a few that keep it valid)."""

    def env(**changes: object) -> Callable[[attempt_pb2.AttemptEvent], None]:
        def change(a: attempt_pb2.AttemptEvent) -> None:
            for name, value in changes.items():
                setattr(a.envelope, name, value)

        return change

    def at(delta: timedelta) -> Callable[[attempt_pb2.AttemptEvent], None]:
        return lambda a: a.envelope.occurred_at.FromDatetime(NOW + delta)

    def body(**changes: object) -> Callable[[attempt_pb2.AttemptEvent], None]:
        def change(a: attempt_pb2.AttemptEvent) -> None:
            for name, value in changes.items():
                setattr(a, name, value)

        return change

    return [
        ("unchanged", lambda a: None),
        ("no envelope", lambda a: a.ClearField("envelope")),
        ("no event_id", env(event_id="")),
        ("event_id not a uuid", env(event_id=EVENT_ID[:-1] + "g")),
        ("event_id with newline", env(event_id=EVENT_ID + "\n")),
        ("nil uuid", env(event_id="00000000-0000-0000-0000-000000000000")),
        ("upper-case event_id", env(event_id=EVENT_ID.upper())),
        ("own tenant", env(tenant_id=TENANT)),
        ("other tenant", env(tenant_id="school-2")),
        ("blank user", env(user_id="  ")),
        ("long user", env(user_id="u" * 129)),
        ("user with NUL", env(user_id="learner\x00")),
        ("no occurred_at", lambda a: a.envelope.ClearField("occurred_at")),
        ("bad nanos", lambda a: setattr(a.envelope.occurred_at, "nanos", -1)),
        ("year 0", lambda a: setattr(a.envelope.occurred_at, "seconds", -62_135_596_801)),
        ("just inside the skew", at(timedelta(seconds=299))),
        ("exactly the skew", at(timedelta(seconds=300))),
        ("beyond the skew", at(timedelta(seconds=300, microseconds=1))),
        ("just inside the age", at(-timedelta(days=30) + timedelta(seconds=1))),
        ("exactly the age", at(-timedelta(days=30))),
        ("beyond the age", at(-timedelta(days=30, microseconds=1))),
        ("long session", env(session_id="s" * 11)),
        ("long source app", lambda a: setattr(a.envelope.source, "app", "a" * 11)),
        ("source with tab", lambda a: setattr(a.envelope.source, "version", "1\t2")),
        ("no item", body(item_id="")),
        ("long item", body(item_id="i" * 11)),
        ("negative version", body(item_version=-1)),
        ("no skills", lambda a: a.ClearField("skill_ids")),
        ("blank skill", lambda a: a.skill_ids.append(" ")),
        ("long skill", lambda a: a.skill_ids.append("s" * 11)),
        ("65 skills", lambda a: a.skill_ids.extend(f"s{i}" for i in range(64))),
        ("skill with bidi mark", lambda a: a.skill_ids.append("sk\u202e")),
        ("score NaN", body(score=math.nan)),
        ("score above 1", body(score=1.5)),
        ("score 0", body(score=0.0)),
        ("no score", lambda a: a.ClearField("score")),
        ("long response", body(response="r" * 11)),
        ("response with controls", body(response="a\x00b")),
        ("negative time", body(response_time_ms=-1)),
        ("negative hints", body(hint_count=-1)),
        ("negative attempt number", body(attempt_number=-1)),
        ("unknown context", body(context=99)),
    ]


# Valid, yet within a millisecond of a bound: the quick check leaves them to the rules.
_AT_A_BOUND = {"exactly the skew", "exactly the age"}


@pytest.mark.parametrize(
    ("name", "change"), _attempt_mutations(), ids=[m[0] for m in _attempt_mutations()]
)
def test_the_quick_check_passes_exactly_the_attempts_the_rules_pass(
    name: str, change: Callable[[attempt_pb2.AttemptEvent], None], monkeypatch: Any
) -> None:
    event = valid("attempt")
    change(event.attempt)
    quick = validation._attempt_surely_valid(
        event.attempt, TENANT, validation.occurred_window(NOW, LIMITS), LIMITS
    )
    # The rules one by one, without the quick check.
    monkeypatch.delitem(validation._SURELY_VALID, "attempt")
    violations = validate_event(event, tenant_id=TENANT, now=NOW, limits=LIMITS)
    assert quick == (not violations and name not in _AT_A_BOUND), violations

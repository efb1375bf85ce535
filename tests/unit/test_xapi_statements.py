"""Which xAPI statements describe an answer, and the AttemptEvent each becomes (ingest/xapi.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.validation import Violation
from ingest.xapi import (
    ActivityMapping,
    ParsedStatement,
    attempt_event,
    not_an_attempt,
    parse_statement,
)

ADL = "http://adlnet.gov/expapi/verbs/"
MAPPING = ActivityMapping("item-1", 2, ("fractions",))
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def statement(
    verb: str = "answered", result: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": "https://lms.example", "name": "stu-1"},
        },
        "verb": {"id": f"{ADL}{verb}"},
        "object": {"objectType": "Activity", "id": "https://lms.example/q/1"},
    }
    if result is not None:
        raw["result"] = result
    return {**raw, **changes}


def parsed(raw: dict[str, Any]) -> ParsedStatement:
    result = parse_statement(raw, field="statements[0]")
    assert isinstance(result, ParsedStatement), result
    return result


@pytest.mark.parametrize(
    ("verb", "result", "correct", "score"),
    [
        ("answered", {"success": True}, True, None),
        ("answered", {"success": False, "score": {"scaled": 0.4}}, False, 0.4),
        ("completed", {"score": {"raw": 3, "min": 1, "max": 5}}, False, 0.5),
        ("scored", {"score": {"scaled": 1}}, True, 1.0),
        ("answered", {"score": {"scaled": -0.5}}, False, 0.0),
        ("passed", None, True, None),
        ("failed", {"score": {"scaled": 0.2}}, False, 0.2),
    ],
)
def test_answers_become_attempts(
    verb: str, result: dict[str, Any] | None, correct: bool, score: float | None
) -> None:
    p = parsed(statement(verb, result))
    assert not_an_attempt(p, MAPPING) is None
    event = attempt_event(p, MAPPING, stored_at=NOW)
    assert (event.correct, event.score if event.HasField("score") else None) == (correct, score)
    assert event.envelope.occurred_at.ToDatetime(tzinfo=UTC) == NOW  # no timestamp: stored
    assert (event.item_id, event.item_version, list(event.skill_ids)) == (
        "item-1",
        2,
        ["fractions"],
    )


@pytest.mark.parametrize(
    ("raw", "mapping", "why"),
    [
        (statement("experienced", {"success": True}), MAPPING, "does not describe an answer"),
        (statement("answered"), MAPPING, "neither success nor score"),
        (statement("completed", {"completion": True}), MAPPING, "neither success nor score"),
        (statement("answered", {"success": True}), None, "mapped to no item"),
        (
            statement("answered", {"success": True}, actor={"mbox": "mailto:a@example.org"}),
            MAPPING,
            "not an Agent with an account",
        ),
    ],
)
def test_what_is_not_an_attempt_says_why(
    raw: dict[str, Any], mapping: ActivityMapping | None, why: str
) -> None:
    reason = not_an_attempt(parsed(raw), mapping)
    assert reason is not None
    assert why in reason


def test_an_id_less_statement_gets_the_same_id_when_resent() -> None:
    first, again = parsed(statement("passed")), parsed(statement("passed"))
    assert first.statement_id == again.statement_id
    assert first.content_sha256 == again.content_sha256
    assert parsed(statement("failed")).statement_id != first.statement_id


def test_content_hash_ignores_what_the_lrs_sets() -> None:
    raw = statement("passed", id="0d8a3b7e-6a1f-4c3e-9b52-8f1e2a7c4d10")
    stamped = {**raw, "stored": "2026-03-01T12:00:00Z", "version": "1.0.3"}
    assert parsed(raw).content_sha256 == parsed(stamped).content_sha256


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([], "statements[0]"),
        ({**statement("passed"), "verb": {"id": "not an iri"}}, "statements[0].verb.id"),
        (statement("passed", id="nope"), "statements[0].id"),
        (statement("passed", {"response": ""}), "statements[0].result.response"),
    ],
)
def test_ralph_refusals_name_the_field(raw: Any, field: str) -> None:
    refused = parse_statement(raw, field="statements[0]")
    assert isinstance(refused, Violation)
    assert refused.field == field

"""Import parsing and per-row validation (CSV and JSON), and export rendering round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from api.services.content import ContentItem, ContentKind, ContentStatus, ContentVersion
from api.services.content_import import (
    FORMULA_STARTS,
    MAX_JSON_DEPTH,
    ImportFormat,
    TooDeepError,
    export_rows,
    loads_bounded,
    neutralise_formula,
    parse_rows,
    render,
    restore_formula,
    validate_rows,
)

CSV = """item_id,kind,title,skill_ids,prompt,choices,answer_key
q1,question,Half plus quarter,fractions;addition,1/2 + 1/4?,"[""3/4"",""2/6""]","[""3/4""]"
q2,question,No answer,fractions,What?,,
,lesson,Intro,fractions,,,
q1,question,Duplicate,fractions,x,,"[""x""]"
,essay,Unknown kind,,,,
"""


def test_csv_rows_are_validated_one_by_one_naming_row_and_field() -> None:
    raw, problems = parse_rows(CSV, ImportFormat.CSV)
    assert problems == []
    valid, row_problems = validate_rows(raw)
    assert [r.item_id for r in valid] == ["q1"]
    assert valid[0].skill_ids == ("fractions", "addition")
    assert valid[0].payload["choices"] == ["3/4", "2/6"]
    fields = {p.field for p in row_problems}
    assert "rows[2].payload.answer_key" in fields
    assert "rows[3].payload.body_markdown" in fields
    assert "rows[4].item_id" in fields
    assert "rows[5].kind" in fields


def test_json_accepts_array_or_items_object() -> None:
    rows = [{"kind": "lesson", "title": "T", "payload": {"body_markdown": "b"}}]
    for document in (rows, {"items": rows}):
        raw, problems = parse_rows(json.dumps(document), ImportFormat.JSON)
        assert problems == []
        valid, row_problems = validate_rows(raw)
        assert row_problems == []
        assert valid[0].kind is ContentKind.LESSON


def test_broken_documents_are_one_problem_on_the_body() -> None:
    for text, fmt in (
        ("{not json", ImportFormat.JSON),
        ('{"a": 1}', ImportFormat.JSON),
        ("title_only\nx\n", ImportFormat.CSV),
    ):
        raw, problems = parse_rows(text, fmt)
        assert raw == []
        assert problems[0].field == "body"


def test_export_csv_reads_back_to_the_same_rows() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    payload = {
        "prompt": 'Café, "quoted"; 1/2?',
        "choices": None,
        "answer_key": ["½"],
        "explanation": "",
    }
    item = ContentItem(
        item_id="q-1",
        kind=ContentKind.QUESTION,
        status=ContentStatus.DRAFT,
        current_version=2,
        published_version=None,
        created_at=now,
        updated_at=now,
        shown=ContentVersion(2, "Title, with comma", ("a", "b"), payload, "", None, now),
    )
    rows = export_rows([item])
    for fmt in ImportFormat:
        raw, problems = parse_rows(render(rows, fmt), fmt)
        assert problems == []
        valid, row_problems = validate_rows(raw)
        assert row_problems == []
        back = valid[0]
        assert (back.item_id, back.kind, back.title, list(back.skill_ids), back.payload) == (
            "q-1",
            ContentKind.QUESTION,
            "Title, with comma",
            ["a", "b"],
            payload,
        )


def test_formula_quoting_round_trips_every_cell() -> None:
    for cell in [
        "=1+1",
        "+cmd",
        "-2",
        "@SUM(A1)",
        "\t=x",
        "\r=x",
        "'=x",
        "''=x",
        "'x",
        "plain",
        "",
    ]:
        quoted = neutralise_formula(cell)
        assert not quoted.startswith(FORMULA_STARTS)
        assert restore_formula(quoted) == cell


def test_json_nested_too_deep_is_refused_before_parsing() -> None:
    assert loads_bounded('{"a": [[1]], "b": "[[[[[[["}') == {"a": [[1]], "b": "[[[[[[["}
    with pytest.raises(TooDeepError):
        loads_bounded("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    raw, problems = parse_rows("[" * 3000 + "]" * 3000, ImportFormat.JSON)
    assert raw == []
    assert problems[0].field == "body"

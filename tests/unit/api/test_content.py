"""Content rules: payload schema per kind, workflow steps and who may take them, edits."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from api.services.content import (
    TRANSITIONS,
    ContentKind,
    ContentStatus,
    searchable_text,
    status_after_edit,
    transition_refusal,
    validate_payload,
)
from api.services.principals import Role

S = ContentStatus
VALID: dict[ContentKind, dict[str, Any]] = {
    ContentKind.QUESTION: {
        "prompt": "1/2 + 1/4?",
        "choices": ["3/4", "2/6"],
        "answer_key": ["3/4"],
    },
    ContentKind.CODE_EXERCISE: {
        "prompt": "Add",
        "language": "python",
        "tests": [{"name": "adds", "code": "assert add(1, 2) == 3"}],
    },
    ContentKind.LESSON: {"body_markdown": "# Fractions"},
    ContentKind.READING: {"body_markdown": "Read this", "estimated_minutes": 12},
    ContentKind.VIDEO: {"url": "https://videos.example.org/f.mp4", "duration_s": 300},
}


@pytest.mark.parametrize("kind", list(ContentKind))
def test_each_kind_accepts_its_payload(kind: ContentKind) -> None:
    normalized, problems = validate_payload(kind, VALID[kind])
    assert problems == []
    assert normalized is not None


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        (ContentKind.QUESTION, {"prompt": "x"}, "body.payload.answer_key"),
        (
            ContentKind.QUESTION,
            {"prompt": "x", "choices": ["a", "b"], "answer_key": ["c"]},
            "body.payload",
        ),
        (
            ContentKind.CODE_EXERCISE,
            {"prompt": "x", "language": "python", "tests": []},
            "body.payload.tests",
        ),
        (
            ContentKind.CODE_EXERCISE,
            {**VALID[ContentKind.CODE_EXERCISE], "language": "cobol"},
            "body.payload.language",
        ),
        (ContentKind.VIDEO, {"url": "ftp://x/y", "duration_s": 3}, "body.payload.url"),
        (ContentKind.LESSON, {"body_markdown": "x", "surprise": 1}, "body.payload.surprise"),
    ],
)
def test_bad_payloads_name_the_field(
    kind: ContentKind, payload: dict[str, object], field: str
) -> None:
    normalized, problems = validate_payload(kind, payload)
    assert normalized is None
    assert field in {p.field for p in problems}


def test_question_text_is_searchable_with_its_choices() -> None:
    text = searchable_text(ContentKind.QUESTION, VALID[ContentKind.QUESTION])
    assert "1/2 + 1/4?" in text
    assert "2/6" in text


def test_the_happy_path_is_a_chain_of_allowed_steps() -> None:
    path = [S.DRAFT, S.IN_REVIEW, S.APPROVED, S.PUBLISHED, S.ARCHIVED]
    roles = {
        (S.DRAFT, S.IN_REVIEW): Role.AUTHOR,
        (S.IN_REVIEW, S.APPROVED): Role.REVIEWER,
        (S.APPROVED, S.PUBLISHED): Role.REVIEWER,
        (S.PUBLISHED, S.ARCHIVED): Role.AUTHOR,
    }
    for current, target in itertools.pairwise(path):
        role = roles[(current, target)]
        assert (
            transition_refusal(
                current, target, roles=frozenset({role}), actor_id="r", version_author_id="a"
            )
            is None
        )


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.DRAFT, S.PUBLISHED),
        (S.DRAFT, S.APPROVED),
        (S.ARCHIVED, S.PUBLISHED),
        (S.PUBLISHED, S.IN_REVIEW),
    ],
)
def test_skipping_steps_is_refused_and_the_legal_moves_listed(
    current: ContentStatus, target: ContentStatus
) -> None:
    refusal = transition_refusal(
        current, target, roles=frozenset(Role), actor_id="x", version_author_id=None
    )
    assert refusal is not None
    assert "not a workflow step" in refusal


@pytest.mark.parametrize("role", [Role.LEARNER, Role.TEACHER, Role.OPERATOR, Role.AUTHOR])
def test_only_reviewers_and_admins_approve(role: Role) -> None:
    refusal = transition_refusal(
        S.IN_REVIEW, S.APPROVED, roles=frozenset({role}), actor_id="x", version_author_id="y"
    )
    assert refusal is not None
    assert "reviewer" in refusal


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ADMIN])
def test_nobody_approves_their_own_version(role: Role) -> None:
    refusal = transition_refusal(
        S.IN_REVIEW, S.APPROVED, roles=frozenset({role}), actor_id="same", version_author_id="same"
    )
    assert refusal is not None
    assert "wrote" in refusal


def test_every_step_names_at_least_one_role_and_no_learner() -> None:
    for roles in TRANSITIONS.values():
        assert roles
        assert Role.LEARNER not in roles


@pytest.mark.parametrize(
    ("current", "after"),
    [
        (S.DRAFT, S.DRAFT),
        (S.IN_REVIEW, S.DRAFT),
        (S.APPROVED, S.DRAFT),
        (S.PUBLISHED, S.DRAFT),
        (S.ARCHIVED, S.ARCHIVED),
    ],
)
def test_edits_send_reviewed_content_back_to_draft(
    current: ContentStatus, after: ContentStatus
) -> None:
    assert status_after_edit(current) is after

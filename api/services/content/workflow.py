"""The review workflow: draft -> in_review -> approved -> published -> archived, with the
moves and roles in ``TRANSITIONS``; nobody approves a version they wrote. Pure rules."""

from __future__ import annotations

from api.services.content.kinds import ContentStatus
from api.services.principals import Role

STAFF_ROLES = frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN})
EDITOR_ROLES = frozenset({Role.AUTHOR, Role.ADMIN})

S = ContentStatus
TRANSITIONS: dict[tuple[ContentStatus, ContentStatus], frozenset[Role]] = {
    (S.DRAFT, S.IN_REVIEW): frozenset({Role.AUTHOR, Role.ADMIN}),
    (S.DRAFT, S.ARCHIVED): frozenset({Role.AUTHOR, Role.ADMIN}),
    (S.IN_REVIEW, S.DRAFT): frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN}),
    (S.IN_REVIEW, S.APPROVED): frozenset({Role.REVIEWER, Role.ADMIN}),
    (S.APPROVED, S.DRAFT): frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN}),
    (S.APPROVED, S.PUBLISHED): frozenset({Role.REVIEWER, Role.ADMIN}),
    (S.PUBLISHED, S.ARCHIVED): frozenset({Role.AUTHOR, Role.REVIEWER, Role.ADMIN}),
    (S.ARCHIVED, S.DRAFT): frozenset({Role.AUTHOR, Role.ADMIN}),
}


def transition_refusal(
    current: ContentStatus,
    target: ContentStatus,
    *,
    roles: frozenset[Role],
    actor_id: str,
    version_author_id: str | None,
) -> str | None:
    """Why ``actor_id`` with ``roles`` may not move an item from ``current`` to ``target``."""
    allowed = TRANSITIONS.get((current, target))
    if allowed is None:
        moves = sorted(t.value for (c, t) in TRANSITIONS if c is current)
        step = f"{current.value} -> {target.value}"
        return f"{step} is not a workflow step; from {current.value}: {', '.join(moves)}"
    if roles.isdisjoint(allowed):
        return f"{current.value} -> {target.value} needs one of: {', '.join(sorted(allowed))}"
    if target is S.APPROVED and version_author_id == actor_id:
        return "nobody approves a version they wrote; ask another reviewer"
    return None


def status_after_edit(current: ContentStatus) -> ContentStatus:
    """Status of an item after a new version is written in ``current``."""
    return S.DRAFT if current in (S.IN_REVIEW, S.APPROVED, S.PUBLISHED) else current

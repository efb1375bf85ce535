"""Which learner id an account's learning data is filed under.

Events carry the client app's own id for a learner (``envelope.user_id``), and the
processors file every view row (skill_mastery, attempts, knowledge_gaps ...) under
it. Accounts have uuids. The mapping: an account's learner id is ``users.learner_id``
when an admin set one (the id the tenant's app uses for this person), otherwise the
account id as text, so an app that sends account ids needs no set-up at all.

Dashboards and placement tests take account ids and read or write views under the
mapped learner id; ``/v1/learners/{id}/mastery`` keeps taking the learner id itself
(client apps call it with their own ids). Changing the mapping moves no data: rows
stay filed under the ids the events carried.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from api.services import audit
from api.services.identifiers import is_uuid
from learnstream.db import Queryable

# Printable ids without spaces, as client apps use them (e.g. "stu-42", "70363", an email
# hash). Same bound as the column's check.
LEARNER_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")

_LEARNER_ID = "coalesce(u.learner_id, u.id::text)"


def learner_id_refusal(learner_id: str) -> str | None:
    """Why ``learner_id`` cannot be used as a learner id; None if it can."""
    if not LEARNER_ID_PATTERN.match(learner_id):
        return "1 to 200 printable ASCII characters without spaces"
    return None


async def learner_id_of(db: Queryable, *, tenant_id: str, user_id: str) -> str | None:
    """The learner id of account ``user_id`` in ``tenant_id``; None if no such account."""
    if not is_uuid(user_id):
        return None
    found: str | None = await db.fetchval(
        f"SELECT {_LEARNER_ID} FROM users u WHERE u.tenant_id = $1 AND u.id = $2",
        tenant_id,
        user_id,
    )
    return found


async def require_learner_id(db: Queryable, *, tenant_id: str, user_id: str) -> str:
    """Like :func:`learner_id_of`, but NotFoundError (404 on ``path.user_id``) if absent."""
    found = await learner_id_of(db, tenant_id=tenant_id, user_id=user_id)
    if found is None:
        raise NotFoundError(
            "no learner account with this id in your tenant",
            field="path.user_id",
            reason="not found",
        )
    return found


async def learner_ids_of(
    db: Queryable, *, tenant_id: str, user_ids: Sequence[str]
) -> dict[str, str]:
    """Account id -> learner id for the accounts of ``user_ids`` that exist in the tenant."""
    wanted = [u for u in user_ids if is_uuid(u)]
    if not wanted:
        return {}
    rows = await db.fetch(
        f"""
        SELECT u.id::text AS user_id, {_LEARNER_ID} AS learner_id
        FROM users u WHERE u.tenant_id = $1 AND u.id = ANY($2::uuid[])
        """,
        tenant_id,
        wanted,
    )
    return {row["user_id"]: row["learner_id"] for row in rows}


async def set_learner_id(
    db: Queryable, *, tenant_id: str, user_id: str, learner_id: str | None, admin_id: str
) -> str:
    """Set (or with None, reset to the account id) the learner id; returns the effective id.

    InvalidInputError for a malformed id, ConflictError when another account of the
    tenant is filed under it already. Audited.
    """
    if learner_id is not None:
        refusal = learner_id_refusal(learner_id)
        if refusal is not None:
            raise InvalidInputError(refusal, field="body.learner_id", reason=refusal)
    if not is_uuid(user_id):
        raise NotFoundError("no user with this id in your tenant", field="path.user_id")
    try:
        effective: str | None = await db.fetchval(
            f"""
            UPDATE users u SET learner_id = $3, updated_at = now()
            WHERE u.tenant_id = $1 AND u.id = $2 RETURNING {_LEARNER_ID}
            """,
            tenant_id,
            user_id,
            learner_id,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(
            "another account of this tenant already has this learner id",
            field="body.learner_id",
            reason="taken",
        ) from exc
    except asyncpg.CheckViolationError as exc:  # the column's bounds, should the pattern drift
        raise InvalidInputError(
            "learner id out of bounds", field="body.learner_id", reason=str(exc)
        ) from exc
    if effective is None:
        raise NotFoundError("no user with this id in your tenant", field="path.user_id")
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=("user", admin_id),
        action=audit.Action.LEARNER_ID_CHANGED,
        outcome=audit.Outcome.SUCCESS,
        target_id=user_id,
        details={"learner_id": effective},
    )
    return effective

"""First run: tenants, accounts and API keys made by whoever runs the deployment.

What ``learnstream tenant|user|apikey create`` (infra/cli.py) does, through the same
services the API uses (accounts, enrolment, learnstream.apikeys). Every function is
idempotent: run twice, it finds what the first run made and says so instead of making
a second one. Each creation is audited with the actor ``("system", "cli")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from api.exceptions import ConflictError, NotFoundError
from api.services import accounts, audit, enrolment
from api.services.principals import Role
from api.services.transactions import transaction
from learnstream import apikeys
from learnstream.apikeys import Scope
from learnstream.db import Queryable
from learnstream.settings import Settings

CLI_ACTOR = ("system", "cli")


@dataclass(frozen=True, slots=True)
class TenantOutcome:
    """``created`` False when the tenant existed (``name`` is then the stored one)."""

    tenant_id: str
    name: str
    created: bool


@dataclass(frozen=True, slots=True)
class UserOutcome:
    """The account, whether it was made now, its enrolment link (if one was issued now)
    and a note for the person running the command (empty when there is nothing to say)."""

    user: accounts.User
    created: bool
    link: enrolment.EnrolmentLink | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ApiKeyOutcome:
    """``issued`` (with the plaintext, shown once) when made now, else the live key found."""

    key_id: str
    scopes: frozenset[Scope]
    issued: apikeys.IssuedApiKey | None
    note: str = ""


async def _require_tenant(db: Queryable, tenant_id: str) -> None:
    if not await db.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant_id):
        raise NotFoundError(
            f"no tenant {tenant_id!r}: create it first (learnstream tenant create {tenant_id})",
            field="tenant",
            reason="unknown tenant",
        )


async def ensure_tenant(
    db: Queryable, *, tenant_id: str, name: str, allow_self_registration: bool
) -> TenantOutcome:
    """Create ``tenant_id`` unless it exists."""
    try:
        await accounts.create_tenant(
            db, tenant_id=tenant_id, name=name, allow_self_registration=allow_self_registration
        )
    except ConflictError:
        stored = await db.fetchval("SELECT name FROM tenants WHERE tenant_id = $1", tenant_id)
        return TenantOutcome(tenant_id, str(stored), created=False)
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=CLI_ACTOR,
        action=audit.Action.TENANT_CREATED,
        outcome=audit.Outcome.SUCCESS,
        target_id=tenant_id,
        details={"allow_self_registration": allow_self_registration},
    )
    return TenantOutcome(tenant_id, name, created=True)


async def ensure_user(
    db: Queryable,
    settings: Settings,
    *,
    tenant_id: str,
    email_address: str,
    roles: frozenset[Role],
    display_name: str,
    new_link: bool,
    now: datetime,
) -> UserOutcome:
    """The account of ``email_address`` in ``tenant_id``: made now (no password, address
    verified, with an enrolment link) or found.

    A found account keeps its roles (a difference is noted, not applied). One that never
    enrolled gets a fresh link only with ``new_link`` (the earlier link then dies).
    """
    await _require_tenant(db, tenant_id)
    existing_id = await db.fetchval(
        "SELECT id::text FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)",
        tenant_id,
        email_address.strip(),
    )
    if existing_id is None:
        # The account, its audit row and its link commit together or not at all.
        async with transaction(db) as conn:
            user = await accounts.create_user(
                conn,
                settings,
                tenant_id=tenant_id,
                email_address=email_address,
                password=None,
                display_name=display_name,
                roles=roles,
                email_verified=True,
                now=now,
            )
            await audit.record(
                conn,
                tenant_id=tenant_id,
                actor=CLI_ACTOR,
                action=audit.Action.USER_CREATED,
                outcome=audit.Outcome.SUCCESS,
                target_id=user.id,
                details={"roles": sorted(roles)},
            )
            first = await enrolment.issue_link(
                conn, settings, tenant_id=tenant_id, user_id=user.id, actor=CLI_ACTOR, now=now
            )
        return UserOutcome(user, created=True, link=first)
    user = await accounts.require_user(db, tenant_id=tenant_id, user_id=existing_id)
    notes = []
    if user.roles != roles:
        notes.append(
            f"it holds the roles {', '.join(sorted(user.roles))}; this command does not "
            "change roles (an admin does: PUT /v1/users/{id}/roles)"
        )
    enrolled = await db.fetchval(
        "SELECT password_hash IS NOT NULL FROM users WHERE id = $1", user.id
    )
    link: enrolment.EnrolmentLink | None = None
    if enrolled:
        notes.append("it has enrolled (set a password); a forgotten one is reset by mail")
    elif new_link:
        link = await enrolment.issue_link(
            db, settings, tenant_id=tenant_id, user_id=user.id, actor=CLI_ACTOR, now=now
        )
        notes.append("a new enrolment link was issued; earlier links no longer work")
    else:
        notes.append(
            "it has not enrolled yet; run again with --new-link for a fresh enrolment link "
            "(the one printed before keeps working until it expires)"
        )
    return UserOutcome(user, created=False, link=link, note="; ".join(notes))


async def ensure_api_key(
    db: Queryable, *, tenant_id: str, app_name: str, scopes: Iterable[Scope]
) -> ApiKeyOutcome:
    """A live key named ``app_name`` in ``tenant_id``: made now, or the one found.

    A found key's secret cannot be shown again (only its digest is stored); the note says
    how to get a new one.
    """
    await _require_tenant(db, tenant_id)
    wanted = frozenset(scopes)
    live = [
        key
        for key in await apikeys.list_api_keys(db, tenant_id=tenant_id)
        if key.app_name == app_name and key.revoked_at is None
    ]
    if live:
        key = live[-1]
        note = (
            "a live key for this app exists; its secret was shown only when it was made. "
            "For a new one revoke it (DELETE /v1/api-keys/{key_id}) and run this again"
        )
        if key.scopes != wanted:
            note += f"; it holds {', '.join(sorted(key.scopes))}, not the scopes asked for"
        return ApiKeyOutcome(key.key_id, key.scopes, issued=None, note=note)
    issued = await apikeys.create_api_key(db, tenant_id=tenant_id, app_name=app_name, scopes=wanted)
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=CLI_ACTOR,
        action=audit.Action.API_KEY_CREATED,
        outcome=audit.Outcome.SUCCESS,
        target_id=issued.key_id,
        details={"app_name": app_name, "scopes": sorted(issued.scopes)},
    )
    return ApiKeyOutcome(issued.key_id, issued.scopes, issued=issued)

"""Tenants, user accounts and roles; registration and email verification.

Password reset and unlocking live in :mod:`api.services.recovery`, single-use tokens
in :mod:`api.services.account_tokens`, first sign-in of operator-made accounts in
:mod:`api.services.enrolment`.

Every function takes the database (asyncpg pool or connection) and ``now`` (UTC)
as arguments, so tests can drive token expiry without waiting. Answers that
could reveal whether an address has an account, or a tenant exists (registration,
reset requests, failed sign-ins), look the same either way and cost the request
the same work; the difference goes only to the mailbox, off the request path.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from api.services import audit, email, passwords, token_versions
from api.services.account_tokens import (
    TokenPurpose,
    consume_account_token,
    issue_account_token,
    mail_account_token,
    revoke_all_refresh_tokens,
)
from api.services.identifiers import is_uuid
from api.services.principals import Role
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.settings import Settings

# Re-exported: callers and tests reach the token helpers through this module too.
__all__ = [
    "TokenPurpose",
    "User",
    "consume_account_token",
    "issue_account_token",
    "revoke_all_refresh_tokens",
]


@dataclass(frozen=True, slots=True)
class User:
    """An account as the API shows it; never carries hashes or secrets. Times are UTC."""

    id: str
    tenant_id: str
    email: str
    display_name: str
    roles: frozenset[Role]
    email_verified: bool
    status: str
    mfa_enabled: bool
    locked_until: datetime | None
    created_at: datetime


_USER_COLUMNS = """
    u.id, u.tenant_id, u.email, u.display_name, u.email_verified_at, u.status,
    u.mfa_enabled_at, u.locked_until, u.created_at,
    coalesce((SELECT array_agg(r.role) FROM user_roles r WHERE r.user_id = u.id), '{}') AS roles
"""


def user_from_row(row: Any) -> User:
    """A ``User`` from a row selected with the standard user columns."""
    return User(
        id=str(row["id"]),
        tenant_id=row["tenant_id"],
        email=row["email"],
        display_name=row["display_name"],
        roles=frozenset(Role(r) for r in row["roles"]),
        email_verified=row["email_verified_at"] is not None,
        status=row["status"],
        mfa_enabled=row["mfa_enabled_at"] is not None,
        locked_until=row["locked_until"],
        created_at=row["created_at"],
    )


def email_fingerprint(address: str) -> str:
    """A short hash of an address for audit rows, so the log holds no plain emails."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()[:16]


# --- tenants -------------------------------------------------------------------------


async def create_tenant(
    db: Queryable, *, tenant_id: str, name: str, allow_self_registration: bool = True
) -> None:
    """Create a tenant; ConflictError if the id is taken."""
    try:
        await db.execute(
            "INSERT INTO tenants (tenant_id, name, allow_self_registration) VALUES ($1, $2, $3)",
            tenant_id,
            name,
            allow_self_registration,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(
            f"tenant {tenant_id!r} exists", field="body.tenant_id", reason="already exists"
        ) from exc


# --- users ---------------------------------------------------------------------------


async def get_user(db: Queryable, *, tenant_id: str, user_id: str) -> User | None:
    """The user ``user_id`` of ``tenant_id``, or None (also for a malformed id)."""
    if not is_uuid(user_id):
        return None
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.id = $2",
        tenant_id,
        user_id,
    )
    return user_from_row(row) if row else None


async def require_user(db: Queryable, *, tenant_id: str, user_id: str) -> User:
    """Like get_user, but NotFoundError (404 naming ``path.user_id``) when absent."""
    user = await get_user(db, tenant_id=tenant_id, user_id=user_id)
    if user is None:
        raise NotFoundError(
            f"no user {user_id} in this tenant", field="path.user_id", reason="not found"
        )
    return user


async def list_users(
    db: Queryable,
    *,
    tenant_id: str,
    role: Role | None = None,
    after_id: str | None = None,
    limit: int,
) -> list[User]:
    """Users of ``tenant_id`` ordered by id, ``limit`` from after ``after_id`` (cursor)."""
    rows = await db.fetch(
        f"""
        SELECT {_USER_COLUMNS} FROM users u
        WHERE u.tenant_id = $1 AND ($2::uuid IS NULL OR u.id > $2)
          AND ($3::text IS NULL OR EXISTS (
                SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = $3))
        ORDER BY u.id LIMIT $4
        """,
        tenant_id,
        after_id,
        role.value if role else None,
        limit,
    )
    return [user_from_row(row) for row in rows]


async def create_user(
    db: Queryable,
    settings: Settings,
    *,
    tenant_id: str,
    email_address: str,
    password: str | None,
    display_name: str = "",
    roles: frozenset[Role] = frozenset({Role.LEARNER}),
    email_verified: bool = False,
    password_hash: str | None = None,
    now: datetime,
) -> User:
    """Create an account directly (admins, bootstrap, tests); ConflictError on a taken email.

    ``password`` None makes an account that can only sign in by a linked identity,
    an enrolment link or after a password reset. ``password_hash``, if given, is
    ``password`` already hashed (so a caller's transaction need not wait for argon2).
    """
    if password is not None:
        problems = passwords.password_problems(password, email=email_address)
        if problems:
            raise InvalidInputError("password is too weak", errors=problems)
    if password is not None and password_hash is None:
        password_hash = await passwords.hash_password(
            password, profile=settings.password_hash_profile
        )
    user_id = str(uuid.uuid4())
    async with transaction(db) as conn:
        if not await conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant_id):
            raise NotFoundError(
                f"no tenant {tenant_id!r}", field="body.tenant_id", reason="unknown tenant"
            )
        try:
            await conn.execute(
                """
                INSERT INTO users (id, tenant_id, email, display_name, password_hash,
                                   email_verified_at, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                """,
                user_id,
                tenant_id,
                email_address.strip(),
                display_name,
                password_hash,
                now if email_verified else None,
                now,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(
                "an account with this email exists in this tenant",
                field="body.email",
                reason="already registered",
            ) from exc
        await conn.executemany(
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)",
            [(user_id, role.value) for role in sorted(roles)],
        )
        return await require_user(conn, tenant_id=tenant_id, user_id=user_id)


async def register(
    db: Queryable,
    settings: Settings,
    sender: email.EmailSender,
    *,
    tenant_id: str,
    email_address: str,
    password: str,
    display_name: str,
    ip: str | None,
    now: datetime,
) -> str | None:
    """Self-registration as a learner; returns the new user's id, or None if none was made.

    The caller answers every case alike: a new account gets a verification mail; a
    taken address gets a "you already have an account" mail instead; a tenant that
    does not exist or takes no registrations creates nothing and mails nothing, after
    hashing the password all the same, so neither the answer nor its time tells
    which tenants exist.
    """
    problems = passwords.password_problems(password, email=email_address)
    if problems:
        raise InvalidInputError("password is too weak", errors=problems)
    allowed = await db.fetchval(
        "SELECT allow_self_registration FROM tenants WHERE tenant_id = $1", tenant_id
    )
    if not allowed:
        await _refuse_registration(
            db, settings, tenant_id=tenant_id, email_address=email_address, password=password, ip=ip
        )
        return None
    password_hash = await passwords.hash_password(password, profile=settings.password_hash_profile)
    try:
        # The account, its token, the audit row and the mail commit together: no account
        # without its verification mail queued, no mail about an account that is not there.
        async with transaction(db) as conn:
            user = await _create_learner(
                conn,
                settings,
                sender,
                tenant_id=tenant_id,
                email_address=email_address,
                password=password,
                password_hash=password_hash,
                display_name=display_name,
                ip=ip,
                now=now,
            )
    except ConflictError:
        await _answer_taken_address(
            db, settings, sender, tenant_id=tenant_id, email_address=email_address, ip=ip
        )
        return None
    await email.dispatch(sender)
    return user.id


async def _refuse_registration(
    db: Queryable,
    settings: Settings,
    *,
    tenant_id: str,
    email_address: str,
    password: str,
    ip: str | None,
) -> None:
    """:func:`register`'s answer to an unknown tenant or closed registration.

    Hashes ``password`` as :func:`create_user` would (the result is thrown away, so the
    answer takes as long) and records the failure, without the tenant as audit tenant.
    """
    await passwords.hash_password(password, profile=settings.password_hash_profile)
    await audit.record(
        db,
        tenant_id=None,
        actor=None,
        action=audit.Action.REGISTER,
        outcome=audit.Outcome.FAILURE,
        ip=ip,
        details={
            "reason": "unknown tenant or registration closed",
            "tenant": tenant_id[:100],
            "email_fp": email_fingerprint(email_address),
        },
    )


async def _create_learner(
    conn: Queryable,
    settings: Settings,
    sender: email.EmailSender,
    *,
    tenant_id: str,
    email_address: str,
    password: str,
    password_hash: str,
    display_name: str,
    ip: str | None,
    now: datetime,
) -> User:
    """:func:`register`'s writes inside its transaction ``conn``: the user, its
    verification token, the audit row and the queued verification mail.

    Raises :class:`ConflictError` (from :func:`create_user`) when the address is taken.
    """
    user = await create_user(
        conn,
        settings,
        tenant_id=tenant_id,
        email_address=email_address,
        password=password,
        password_hash=password_hash,
        display_name=display_name,
        now=now,
    )
    token = await issue_account_token(
        conn,
        user_id=user.id,
        purpose=TokenPurpose.VERIFY_EMAIL,
        ttl_s=settings.email_verification_ttl_s,
        now=now,
    )
    await audit.record(
        conn,
        tenant_id=tenant_id,
        actor=("user", user.id),
        action=audit.Action.REGISTER,
        outcome=audit.Outcome.SUCCESS,
        target_id=user.id,
        ip=ip,
    )
    mail = email.verification_email(user.email, token, settings, account_id=user.id)
    await email.queue(sender, conn, mail)
    return user


async def _answer_taken_address(
    db: Queryable,
    settings: Settings,
    sender: email.EmailSender,
    *,
    tenant_id: str,
    email_address: str,
    ip: str | None,
) -> None:
    """:func:`register`'s answer when ``email_address`` already has an account in the
    tenant: records the failure and mails the holder "you already have an account"."""
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=None,
        action=audit.Action.REGISTER,
        outcome=audit.Outcome.FAILURE,
        ip=ip,
        details={"reason": "email taken", "email_fp": email_fingerprint(email_address)},
    )
    holder = await db.fetchval(
        "SELECT id FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)",
        tenant_id,
        email_address.strip(),
    )
    await sender.send(
        email.already_registered_email(
            email_address, settings, account_id=str(holder) if holder else None
        )
    )


async def resend_verification(
    db: Queryable,
    settings: Settings,
    sender: email.EmailSender,
    *,
    tenant_id: str,
    email_address: str,
    now: datetime,
) -> None:
    """Mail a fresh verification token if the address has an unverified account.

    The request does one lookup either way; the token and mail run off the request path.
    """
    row = await db.fetchrow(
        """
        SELECT id, email FROM users
        WHERE tenant_id = $1 AND lower(email) = lower($2) AND email_verified_at IS NULL
        """,
        tenant_id,
        email_address.strip(),
    )
    if row is None:
        return
    user_id, address = str(row["id"]), str(row["email"])
    await mail_account_token(
        db,
        sender,
        user_id=user_id,
        purpose=TokenPurpose.VERIFY_EMAIL,
        ttl_s=settings.email_verification_ttl_s,
        now=now,
        compose=lambda token: email.verification_email(
            address, token, settings, account_id=user_id
        ),
    )


async def verify_email(db: Queryable, *, token: str, now: datetime) -> str:
    """Spend a verification token; returns the user id. InvalidInputError if not spendable."""
    async with transaction(db) as conn:
        user_id = await consume_account_token(
            conn, token=token, purpose=TokenPurpose.VERIFY_EMAIL, now=now
        )
        tenant_id = await conn.fetchval(
            """
            UPDATE users SET email_verified_at = coalesce(email_verified_at, $2), updated_at = $2
            WHERE id = $1 RETURNING tenant_id
            """,
            user_id,
            now,
        )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", user_id),
            action=audit.Action.EMAIL_VERIFIED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
        )
    return user_id


# --- roles -----------------------------------------------------------------------------


async def set_roles(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    roles: frozenset[Role],
    admin_id: str,
) -> User:
    """Replace the user's roles. Added roles take effect at their next token refresh;
    removing any role ends their access tokens at once (token version), so a
    demoted user cannot use the old roles until the token would expire."""
    bumped = None
    async with transaction(db) as conn:
        before = await require_user(conn, tenant_id=tenant_id, user_id=user_id)
        if before.roles - roles:
            bumped = await token_versions.bump(conn, user_id=user_id)
        await conn.execute("DELETE FROM user_roles WHERE user_id = $1", user_id)
        await conn.executemany(
            "INSERT INTO user_roles (user_id, role, granted_by) VALUES ($1, $2, $3)",
            [(user_id, role.value, admin_id) for role in sorted(roles)],
        )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", admin_id),
            action=audit.Action.ROLE_CHANGED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            details={"before": sorted(before.roles), "after": sorted(roles)},
        )
        after = await require_user(conn, tenant_id=tenant_id, user_id=user_id)
    await token_versions.announce(redis, settings, bumped)
    return after


# --- single-use tokens -------------------------------------------------------------------


async def check_password(db: Queryable, settings: Settings, *, user_id: str, password: str) -> bool:
    """True if ``password`` is the user's current one (re-authentication for risky changes)."""
    password_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    return await passwords.verify_password(
        password_hash, password, profile=settings.password_hash_profile
    )

"""Tenants, user accounts and roles; registration, email verification, password reset, unlock.

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
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
from redis.asyncio import Redis

from api.exceptions import ConflictError, InvalidInputError, NotFoundError
from api.services import audit, email, lockout, passwords, token_versions, tokens
from api.services.identifiers import is_uuid
from api.services.principals import Role
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.settings import Settings


class TokenPurpose(StrEnum):
    """What a mailed single-use token may be spent on."""

    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    UNLOCK = "unlock"


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
    now: datetime,
) -> User:
    """Create an account directly (admins, bootstrap, tests); ConflictError on a taken email.

    ``password`` None makes an account that can only sign in by a linked identity
    or after a password reset.
    """
    if password is not None:
        problems = passwords.password_problems(password, email=email_address)
        if problems:
            raise InvalidInputError("password is too weak", errors=problems)
    password_hash = (
        await passwords.hash_password(password, profile=settings.password_hash_profile)
        if password is not None
        else None
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
        # The same argon2 work create_user would do; the result is thrown away.
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
        return None
    try:
        user = await create_user(
            db,
            settings,
            tenant_id=tenant_id,
            email_address=email_address,
            password=password,
            display_name=display_name,
            now=now,
        )
    except ConflictError:
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
        return None
    token = await issue_account_token(
        db,
        user_id=user.id,
        purpose=TokenPurpose.VERIFY_EMAIL,
        ttl_s=settings.email_verification_ttl_s,
        now=now,
    )
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=("user", user.id),
        action=audit.Action.REGISTER,
        outcome=audit.Outcome.SUCCESS,
        target_id=user.id,
        ip=ip,
    )
    await sender.send(email.verification_email(user.email, token, settings, account_id=user.id))
    return user.id


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

    async def mail_token() -> None:
        token = await issue_account_token(
            db,
            user_id=user_id,
            purpose=TokenPurpose.VERIFY_EMAIL,
            ttl_s=settings.email_verification_ttl_s,
            now=now,
        )
        await sender.send(email.verification_email(address, token, settings, account_id=user_id))

    await email.off_request_path(sender, mail_token)


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


# --- password reset and unlock ---------------------------------------------------------


async def request_password_reset(
    db: Queryable,
    settings: Settings,
    sender: email.EmailSender,
    *,
    tenant_id: str,
    email_address: str,
    ip: str | None,
    now: datetime,
) -> None:
    """Mail a single-use reset token if an active account has this address; else nothing.

    The request itself does the same work either way (one lookup, one audit row);
    issuing the token and mailing it run off the request path.
    """
    row = await db.fetchrow(
        """
        SELECT id, email FROM users
        WHERE tenant_id = $1 AND lower(email) = lower($2) AND status = 'active'
        """,
        tenant_id,
        email_address.strip(),
    )
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=None,
        action=audit.Action.PASSWORD_RESET_REQUESTED,
        outcome=audit.Outcome.SUCCESS if row else audit.Outcome.FAILURE,
        target_id=str(row["id"]) if row else None,
        ip=ip,
        details={} if row else {"email_fp": email_fingerprint(email_address)},
    )
    if row is None:
        return
    user_id, address = str(row["id"]), str(row["email"])

    async def mail_token() -> None:
        token = await issue_account_token(
            db,
            user_id=user_id,
            purpose=TokenPurpose.RESET_PASSWORD,
            ttl_s=settings.password_reset_ttl_s,
            now=now,
        )
        await sender.send(email.password_reset_email(address, token, settings, account_id=user_id))

    await email.off_request_path(sender, mail_token)


async def reset_password(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    token: str,
    new_password: str,
    ip: str | None,
    now: datetime,
) -> str:
    """Spend a reset token and set ``new_password``; returns the user id.

    The reset also unlocks the account, marks the email verified (the mail
    reached its owner), revokes every refresh token and ends every access token
    (token version), signing out all devices at once.
    The token is only spent once the new password passes the rules.
    """
    row = await db.fetchrow(
        """
        SELECT u.id, u.email FROM account_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_sha256 = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3
        """,
        tokens.token_sha256(token),
        TokenPurpose.RESET_PASSWORD.value,
        now,
    )
    if row is None:
        raise _unspendable(TokenPurpose.RESET_PASSWORD)
    problems = passwords.password_problems(new_password, email=row["email"])
    if problems:
        raise InvalidInputError("password is too weak", errors=problems)
    password_hash = await passwords.hash_password(
        new_password, profile=settings.password_hash_profile
    )
    async with transaction(db) as conn:
        user_id = await consume_account_token(
            conn, token=token, purpose=TokenPurpose.RESET_PASSWORD, now=now
        )
        tenant_id = await conn.fetchval(
            """
            UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL,
                email_verified_at = coalesce(email_verified_at, $3), updated_at = $3
            WHERE id = $1 RETURNING tenant_id
            """,
            user_id,
            password_hash,
            now,
        )
        bumped = await token_versions.bump(conn, user_id=user_id)
        await revoke_all_refresh_tokens(conn, user_id=user_id, now=now)
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", user_id),
            action=audit.Action.PASSWORD_RESET,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            ip=ip,
        )
    await token_versions.announce(redis, settings, bumped)
    await lockout.reset(redis, settings, user_id=user_id)
    return user_id


async def unlock_with_token(
    db: Queryable, redis: Redis, settings: Settings, *, token: str, ip: str | None, now: datetime
) -> str:
    """Spend the unlock token mailed at lockout; returns the user id."""
    async with transaction(db) as conn:
        user_id = await consume_account_token(
            conn, token=token, purpose=TokenPurpose.UNLOCK, now=now
        )
        await _unlock(conn, user_id=user_id, actor=("user", user_id), ip=ip, now=now)
    await lockout.reset(redis, settings, user_id=user_id)
    return user_id


async def unlock_by_admin(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    admin_id: str,
    now: datetime,
) -> None:
    """An admin of the same tenant clears a lockout."""
    await require_user(db, tenant_id=tenant_id, user_id=user_id)
    await _unlock(db, user_id=user_id, actor=("user", admin_id), ip=None, now=now)
    await lockout.reset(redis, settings, user_id=user_id)


async def record_login_failure(
    db: Queryable,
    settings: Settings,
    sender: email.EmailSender,
    *,
    attempt: lockout.Attempt,
    user_id: str,
    tenant_id: str,
    reason: str,
    ip: str | None,
    now: datetime,
) -> None:
    """Record a failed password or MFA check of an admitted ``attempt``.

    Mirrors the count on the user row and audits it. If the attempt held the last
    slot the account is now locked: the row gets ``locked_until``, an unlock link
    is mailed and LockedError (the same 423 an unknown address gets) is raised;
    otherwise the caller answers its own 401.
    """
    locks = attempt.last
    locked_until = now + timedelta(seconds=settings.login_lockout_s) if locks else None
    async with transaction(db) as conn:
        address = await conn.fetchval(
            """
            UPDATE users SET failed_logins = $2, locked_until = coalesce($3, locked_until)
            WHERE id = $1 RETURNING email
            """,
            user_id,
            0 if locks else attempt.number,
            locked_until,
        )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=None,
            action=audit.Action.LOGIN,
            outcome=audit.Outcome.FAILURE,
            target_id=user_id,
            ip=ip,
            details={"reason": reason, "attempt": attempt.number},
        )
        if locks:
            await audit.record(
                conn,
                tenant_id=tenant_id,
                actor=("system", None),
                action=audit.Action.ACCOUNT_LOCKED,
                outcome=audit.Outcome.SUCCESS,
                target_id=user_id,
                ip=ip,
                details={"until": locked_until},
            )
    if not locks:
        return
    if address is not None:

        async def mail_unlock_link() -> None:
            token = await issue_account_token(
                db,
                user_id=user_id,
                purpose=TokenPurpose.UNLOCK,
                ttl_s=max(settings.login_lockout_s, 3600),
                now=now,
            )
            await sender.send(email.unlock_email(address, token, settings, account_id=user_id))

        await email.off_request_path(sender, mail_unlock_link)
    raise lockout.locked_error(settings, retry_after_s=settings.login_lockout_s)


async def _unlock(
    db: Queryable, *, user_id: str, actor: tuple[str, str], ip: str | None, now: datetime
) -> None:
    tenant_id = await db.fetchval(
        """
        UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = $2
        WHERE id = $1 RETURNING tenant_id
        """,
        user_id,
        now,
    )
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=actor,
        action=audit.Action.ACCOUNT_UNLOCKED,
        outcome=audit.Outcome.SUCCESS,
        target_id=user_id,
        ip=ip,
    )


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


async def issue_account_token(
    db: Queryable, *, user_id: str, purpose: TokenPurpose, ttl_s: int, now: datetime
) -> str:
    """A new single-use token for ``purpose``, valid ``ttl_s`` seconds; earlier ones expire."""
    plaintext, digest = tokens.new_opaque_token(tokens.ACCOUNT_TOKEN_PREFIX)
    async with transaction(db) as conn:
        # Only the newest mailed token of a purpose works: an old mail found later is dead.
        await conn.execute(
            """
            UPDATE account_tokens SET expires_at = least(expires_at, $3)
            WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
            """,
            user_id,
            purpose.value,
            now,
        )
        await conn.execute(
            """
            INSERT INTO account_tokens (token_sha256, user_id, purpose, created_at, expires_at)
            VALUES ($1, $2, $3, $4, $5)
            """,
            digest,
            user_id,
            purpose.value,
            now,
            now + timedelta(seconds=ttl_s),
        )
    return plaintext


async def consume_account_token(
    db: Queryable, *, token: str, purpose: TokenPurpose, now: datetime
) -> str:
    """Mark the token used and return its user id; InvalidInputError if unknown/used/expired.

    One UPDATE both checks and spends, so two concurrent requests cannot both win.
    """
    user_id = await db.fetchval(
        """
        UPDATE account_tokens SET used_at = $3
        WHERE token_sha256 = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3
        RETURNING user_id
        """,
        tokens.token_sha256(token),
        purpose.value,
        now,
    )
    if user_id is None:
        raise _unspendable(purpose)
    return str(user_id)


async def revoke_all_refresh_tokens(db: Queryable, *, user_id: str, now: datetime) -> None:
    """Revoke every refresh token of the user; pair with ``token_versions.bump`` to end
    their access tokens too."""
    await db.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
        now,
    )


def _unspendable(purpose: TokenPurpose) -> InvalidInputError:
    return InvalidInputError(
        f"{purpose.value} token is unknown, already used or expired",
        field="body.token",
        reason="unknown, used or expired",
    )


async def check_password(db: Queryable, settings: Settings, *, user_id: str, password: str) -> bool:
    """True if ``password`` is the user's current one (re-authentication for risky changes)."""
    password_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    return await passwords.verify_password(
        password_hash, password, profile=settings.password_hash_profile
    )

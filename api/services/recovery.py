"""Password reset and unlocking: mailed single-use tokens, lockout bookkeeping.

Mail goes through the outbox (api/services/outbox.py) in the same transaction as the
token it carries, issued off the request path where an account exists for some
requests and not others, so the answer takes as long either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from redis.asyncio import Redis

from api.exceptions import InvalidInputError
from api.services import audit, email, lockout, passwords, token_versions, tokens
from api.services.account_tokens import (
    TokenPurpose,
    consume_account_token,
    mail_account_token,
    revoke_all_refresh_tokens,
    unspendable,
)
from api.services.accounts import email_fingerprint, require_user
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.settings import Settings


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
    await mail_account_token(
        db,
        sender,
        user_id=user_id,
        purpose=TokenPurpose.RESET_PASSWORD,
        ttl_s=settings.password_reset_ttl_s,
        now=now,
        compose=lambda token: email.password_reset_email(
            address, token, settings, account_id=user_id
        ),
    )


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
        raise unspendable(TokenPurpose.RESET_PASSWORD)
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
        await mail_account_token(
            db,
            sender,
            user_id=user_id,
            purpose=TokenPurpose.UNLOCK,
            ttl_s=max(settings.login_lockout_s, 3600),
            now=now,
            compose=lambda token: email.unlock_email(address, token, settings, account_id=user_id),
        )
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

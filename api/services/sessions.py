"""Sign-in, MFA step, refresh-token rotation, sign-out, and the lockout rule.

Rules:
- ``login_max_failures`` wrong passwords or codes in a row lock the account for
  ``login_lockout_s``; the counter resets only when a whole sign-in (MFA step
  included) succeeds, so re-entering a known password cannot buy fresh MFA guesses.
  Each check is admitted by the atomic gate in ``api.services.lockout`` before it
  runs, so concurrent guesses cannot overrun the limit, and addresses without an
  account get the same answers.
- Every refresh rotates: the presented refresh token is spent and a successor
  issued in the same family. Presenting a spent token again means it was copied,
  so the whole family is revoked and the user must sign in again.
- Sign-out revokes the refresh family of the session it is called from (and of a
  refresh token it is given), and raises the user's token version
  (api/services/token_versions.py), so no access token issued before it works.
- A replayed refresh token revokes its family and raises the token version too.
- Every access token names its refresh family (``sid``) and the token version it
  was issued under (``ver``), read under a share lock on the user row, so a bump
  committed concurrently either waits for the issue or sees its token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from api.exceptions import ForbiddenError, LockedError, NotAuthenticatedError
from api.services import audit, email, lockout, mfa, passwords, token_versions, tokens
from api.services.accounts import email_fingerprint
from api.services.principals import Role
from api.services.recovery import record_login_failure
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.settings import Settings


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a successful sign-in or refresh returns; ``expires_in_s`` is the access TTL."""

    access_token: str
    refresh_token: str
    expires_in_s: int
    mfa_verified: bool


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """Password accepted; the client must send a TOTP or backup code with this token."""

    mfa_token: str


@dataclass(frozen=True, slots=True)
class LockoutState:
    """Failure counter and lock after one more failure; ``locked_until`` UTC or None."""

    failed_logins: int
    locked_until: datetime | None

    @property
    def just_locked(self) -> bool:
        """True if this failure set a lock."""
        return self.locked_until is not None


def after_failure(
    failed_logins: int, *, max_failures: int, lockout_s: int, now: datetime
) -> LockoutState:
    """The lockout state after one more failed attempt.

    Reaching ``max_failures`` locks until ``now + lockout_s`` and restarts the count,
    so after the lock lapses the user again has ``max_failures`` tries.
    """
    failures = failed_logins + 1
    if failures >= max_failures:
        return LockoutState(0, now + timedelta(seconds=lockout_s))
    return LockoutState(failures, None)


def is_locked(locked_until: datetime | None, *, now: datetime) -> bool:
    """True while a lock set at some failure is still in force at ``now``."""
    return locked_until is not None and locked_until > now


_BAD_CREDENTIALS = "email or password is wrong"


async def login(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    sender: email.EmailSender,
    *,
    tenant_id: str,
    email_address: str,
    password: str,
    ip: str | None,
    now: datetime,
) -> TokenPair | MfaChallenge:
    """Check the password; tokens, or an MFA challenge when the user has TOTP enrolled."""
    row = await db.fetchrow(
        """
        SELECT id, email, password_hash, status, email_verified_at, locked_until,
               mfa_enabled_at FROM users
        WHERE tenant_id = $1 AND lower(email) = lower($2)
        """,
        tenant_id,
        email_address.strip(),
    )
    if row is None:
        raise await _unknown_email_failure(
            db,
            redis,
            settings,
            tenant_id=tenant_id,
            email_address=email_address,
            password=password,
            ip=ip,
        )
    user_id = str(row["id"])
    attempt = await lockout.admit(redis, settings, key=lockout.user_key(settings, user_id=user_id))
    ok = await passwords.verify_password(
        row["password_hash"], password, profile=settings.password_hash_profile
    )
    if not ok:
        await record_login_failure(
            db,
            settings,
            sender,
            attempt=attempt,
            user_id=user_id,
            tenant_id=tenant_id,
            reason="wrong password",
            ip=ip,
            now=now,
        )
        raise NotAuthenticatedError(
            _BAD_CREDENTIALS, field="body.password", reason=_BAD_CREDENTIALS
        )
    await _require_sign_in_allowed(redis, row, attempt)
    if passwords.needs_rehash(row["password_hash"], profile=settings.password_hash_profile):
        new_hash = await passwords.hash_password(password, profile=settings.password_hash_profile)
        await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, new_hash)
    if row["mfa_enabled_at"] is not None:
        return await _challenge_mfa(
            db, settings, user_id=user_id, tenant_id=tenant_id, ip=ip, now=now
        )
    pair = await _signed_in(
        db, settings, user_id=user_id, tenant_id=tenant_id, mfa_verified=False, ip=ip, now=now
    )
    await lockout.reset(redis, settings, user_id=user_id)
    return pair


async def _unknown_email_failure(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    email_address: str,
    password: str,
    ip: str | None,
) -> LockedError | NotAuthenticatedError:
    """:func:`login`'s answer to an address with no account in the tenant, to raise.

    The address is gated and answered like an account (401s, then 423), and the
    password check spends the same time as a real one, so nothing reveals who has one.
    """
    attempt = await lockout.admit(
        redis,
        settings,
        key=lockout.unknown_key(settings, tenant_id=tenant_id, email_address=email_address),
    )
    await passwords.verify_password(None, password, profile=settings.password_hash_profile)
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=None,
        action=audit.Action.LOGIN,
        outcome=audit.Outcome.FAILURE,
        ip=ip,
        details={"reason": "unknown email", "email_fp": email_fingerprint(email_address)},
    )
    if attempt.last:
        return lockout.locked_error(settings, retry_after_s=settings.login_lockout_s)
    return NotAuthenticatedError(_BAD_CREDENTIALS, field="body.password", reason=_BAD_CREDENTIALS)


async def _require_sign_in_allowed(redis: Redis, row: Any, attempt: lockout.Attempt) -> None:
    """After the right password: raise :class:`ForbiddenError` for a disabled or
    unverified account (``row`` from :func:`login`'s user query).

    A right password that signs nothing in yet (MFA pending, disabled, unverified) gives
    the lockout slot back; the failure count stays until a whole sign-in succeeds.
    """
    if (
        row["mfa_enabled_at"] is not None
        or row["status"] != "active"
        or row["email_verified_at"] is None
    ):
        await lockout.release(redis, attempt)
    if row["status"] != "active":
        raise ForbiddenError("this account is disabled", field="body.email", reason="disabled")
    if row["email_verified_at"] is None:
        raise ForbiddenError(
            "email address not verified; use the mailed token or POST /v1/auth/verify-email/resend",
            field="body.email",
            reason="email not verified",
        )


async def _challenge_mfa(
    db: Queryable,
    settings: Settings,
    *,
    user_id: str,
    tenant_id: str,
    ip: str | None,
    now: datetime,
) -> MfaChallenge:
    """:func:`login`'s answer for a TOTP-enrolled user whose password was right: an
    audit row and the challenge token for :func:`complete_mfa_login`."""
    await audit.record(
        db,
        tenant_id=tenant_id,
        actor=("user", user_id),
        action=audit.Action.MFA_CHALLENGE,
        outcome=audit.Outcome.SUCCESS,
        target_id=user_id,
        ip=ip,
        details={"step": "password accepted"},
    )
    return MfaChallenge(
        tokens.issue_mfa_challenge(user_id=user_id, tenant_id=tenant_id, settings=settings, now=now)
    )


async def complete_mfa_login(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    sender: email.EmailSender,
    *,
    mfa_token: str,
    code: str | None,
    backup_code: str | None,
    ip: str | None,
    now: datetime,
) -> TokenPair:
    """Second step of sign-in: a TOTP code (or one unused backup code) for tokens."""
    user_id, tenant_id = tokens.decode_mfa_challenge(mfa_token, settings=settings)
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            "SELECT mfa_secret, mfa_last_step, locked_until FROM users WHERE id = $1 FOR UPDATE",
            user_id,
        )
        if row is None or row["mfa_secret"] is None:
            raise NotAuthenticatedError(
                "MFA is not enrolled", field="body.mfa_token", reason="no MFA on this account"
            )
        attempt = await lockout.admit(
            redis, settings, key=lockout.user_key(settings, user_id=user_id)
        )
        accepted = False
        if code is not None:
            ring = mfa.keyring(settings)
            opened = mfa.open_sealed(row["mfa_secret"], user_id=user_id, ring=ring)
            step = mfa.matching_step(opened.secret, code, now=now, last_step=row["mfa_last_step"])
            if step is not None:
                # Lazy re-encryption: a plain secret or one under an older key is
                # rewritten under the current key at its owner's sign-in.
                await conn.execute(
                    "UPDATE users SET mfa_last_step = $2, mfa_secret = $3 WHERE id = $1",
                    user_id,
                    step,
                    mfa.seal(opened.secret, user_id=user_id, ring=ring)
                    if opened.stale
                    else row["mfa_secret"],
                )
                accepted = True
        elif backup_code is not None:
            accepted = await mfa.spend_backup_code(conn, user_id=user_id, code=backup_code, now=now)
            if accepted:
                await audit.record(
                    conn,
                    tenant_id=tenant_id,
                    actor=("user", user_id),
                    action=audit.Action.BACKUP_CODE_USED,
                    outcome=audit.Outcome.SUCCESS,
                    target_id=user_id,
                    ip=ip,
                )
    if not accepted:
        await record_login_failure(
            db,
            settings,
            sender,
            attempt=attempt,
            user_id=user_id,
            tenant_id=tenant_id,
            reason="wrong MFA code",
            ip=ip,
            now=now,
        )
        field = "body.code" if code is not None else "body.backup_code"
        raise NotAuthenticatedError(
            "MFA code is wrong, expired or already used", field=field, reason="wrong code"
        )
    pair = await _signed_in(
        db, settings, user_id=user_id, tenant_id=tenant_id, mfa_verified=True, ip=ip, now=now
    )
    await lockout.reset(redis, settings, user_id=user_id)
    return pair


async def refresh(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    refresh_token: str,
    ip: str | None,
    now: datetime,
) -> TokenPair:
    """Spend ``refresh_token`` for a new pair in the same family (roles re-read now).

    A token spent before revokes its family and ends the user's access tokens.
    """
    reused: tuple[str, str] | None = None
    bumped: token_versions.Bumped | None = None
    digest = tokens.token_sha256(refresh_token)
    async with transaction(db) as conn:
        row = await _lock_refresh_token(conn, digest)
        if row is not None and row["rotated_at"] is not None and row["revoked_at"] is None:
            bumped = await _revoke_reused_family(conn, row, ip=ip, now=now)
            reused = (row["tenant_id"], str(row["user_id"]))
        elif row is not None and _may_rotate(row, now=now):
            await conn.execute(
                "UPDATE refresh_tokens SET rotated_at = $2 WHERE id = $1", row["id"], now
            )
            return await _issue_pair(
                conn,
                settings,
                user_id=str(row["user_id"]),
                tenant_id=row["tenant_id"],
                mfa_verified=row["mfa_verified"],
                family_id=str(row["family_id"]),
                now=now,
            )
    await token_versions.announce(redis, settings, bumped)
    detail = (
        "refresh token was already used; every session from that sign-in is revoked"
        if reused
        else "refresh token is unknown, expired or revoked"
    )
    raise NotAuthenticatedError(detail, field="body.refresh_token", reason=detail)


async def _lock_refresh_token(conn: Queryable, digest: bytes) -> Any:
    """The refresh token with SHA-256 ``digest`` joined with its user, row-locked in
    :func:`refresh`'s transaction ``conn``; None if unknown.

    Lock order everywhere: the user row, then refresh tokens (as password reset,
    sign-out and MFA enrolment), so a refresh racing them cannot deadlock.
    """
    owner = await conn.fetchval(
        "SELECT user_id FROM refresh_tokens WHERE token_sha256 = $1", digest
    )
    if owner is not None:
        await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", owner)
    return await conn.fetchrow(
        """
        SELECT t.id, t.family_id, t.user_id, t.mfa_verified, t.expires_at, t.rotated_at,
               t.revoked_at, u.tenant_id, u.status, u.locked_until
        FROM refresh_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_sha256 = $1 FOR UPDATE OF t
        """,
        digest,
    )


async def _revoke_reused_family(
    conn: Queryable, row: Any, *, ip: str | None, now: datetime
) -> token_versions.Bumped | None:
    """A spent refresh token (``row`` from :func:`_lock_refresh_token`) came back:
    someone holds a copy. Revoke its whole family, raise the user's token version (the
    copy may have been refreshed already, so its access tokens die too) and audit it;
    the bump, for :func:`token_versions.announce` after commit."""
    await conn.execute(
        """
        UPDATE refresh_tokens SET revoked_at = $2
        WHERE family_id = $1 AND revoked_at IS NULL
        """,
        row["family_id"],
        now,
    )
    bumped = await token_versions.bump(conn, user_id=str(row["user_id"]))
    await audit.record(
        conn,
        tenant_id=row["tenant_id"],
        actor=("user", str(row["user_id"])),
        action=audit.Action.REFRESH_TOKEN_REUSED,
        outcome=audit.Outcome.DENIED,
        target_id=str(row["user_id"]),
        ip=ip,
        details={"family_id": str(row["family_id"])},
    )
    return bumped


def _may_rotate(row: Any, *, now: datetime) -> bool:
    """Whether refresh token ``row`` (from :func:`_lock_refresh_token`, not a reused
    one) may be spent at ``now``: not revoked nor expired, its user active and unlocked."""
    return bool(
        row["revoked_at"] is None
        and row["expires_at"] > now
        and row["status"] == "active"
        and not is_locked(row["locked_until"], now=now)
    )


async def logout(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    claims: tokens.AccessClaims,
    refresh_token: str | None,
    ip: str | None,
    now: datetime,
) -> None:
    """Revoke this session's refresh family (and that of ``refresh_token``, if the
    caller's) and end every access token of the user issued until now."""
    async with transaction(db) as conn:
        bumped = await token_versions.bump(conn, user_id=claims.user_id)
        await conn.execute(
            """
            UPDATE refresh_tokens SET revoked_at = $3
            WHERE revoked_at IS NULL AND user_id = $2 AND (family_id::text = $1 OR family_id = (
                SELECT family_id FROM refresh_tokens WHERE token_sha256 = $4 AND user_id = $2))
            """,
            claims.session_id,
            claims.user_id,
            now,
            tokens.token_sha256(refresh_token) if refresh_token is not None else None,
        )
        await audit.record(
            conn,
            tenant_id=claims.tenant_id,
            actor=("user", claims.user_id),
            action=audit.Action.LOGOUT,
            outcome=audit.Outcome.SUCCESS,
            target_id=claims.user_id,
            ip=ip,
        )
    await token_versions.announce(redis, settings, bumped)


async def sign_in_verified_identity(
    db: Queryable,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    ip: str | None,
    now: datetime,
) -> TokenPair | MfaChallenge:
    """Sign in an account whose identity an outside provider vouched for (api/services/oidc.py).

    No password, so no lockout; a disabled account is refused, and an account with TOTP
    enrolled still answers the MFA challenge.
    """
    row = await db.fetchrow(
        "SELECT status, mfa_enabled_at FROM users WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        user_id,
    )
    if row is None or row["status"] != "active":
        raise ForbiddenError("this account is disabled", field="body.code", reason="disabled")
    if row["mfa_enabled_at"] is not None:
        return MfaChallenge(
            tokens.issue_mfa_challenge(
                user_id=user_id, tenant_id=tenant_id, settings=settings, now=now
            )
        )
    return await _signed_in(
        db, settings, user_id=user_id, tenant_id=tenant_id, mfa_verified=False, ip=ip, now=now
    )


async def _signed_in(
    db: Queryable,
    settings: Settings,
    *,
    user_id: str,
    tenant_id: str,
    mfa_verified: bool,
    ip: str | None,
    now: datetime,
) -> TokenPair:
    async with transaction(db) as conn:
        await conn.execute("UPDATE users SET failed_logins = 0 WHERE id = $1", user_id)
        pair = await _issue_pair(
            conn,
            settings,
            user_id=user_id,
            tenant_id=tenant_id,
            mfa_verified=mfa_verified,
            family_id=None,
            now=now,
        )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", user_id),
            action=audit.Action.LOGIN,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            ip=ip,
            details={"mfa": mfa_verified},
        )
    return pair


async def _issue_pair(
    conn: Queryable,
    settings: Settings,
    *,
    user_id: str,
    tenant_id: str,
    mfa_verified: bool,
    family_id: str | None,
    now: datetime,
) -> TokenPair:
    # FOR SHARE (callers hold FOR UPDATE already): a concurrent bump (reset, demotion,
    # revocation) waits for this issue to commit and then revokes what it issued, or
    # this issue waits and reads the new version.
    version = await conn.fetchval(
        "SELECT token_version FROM users WHERE id = $1 FOR SHARE", user_id
    )
    roles = frozenset(
        Role(r["role"])
        for r in await conn.fetch("SELECT role FROM user_roles WHERE user_id = $1", user_id)
    )
    family_id = family_id or str(uuid.uuid4())
    access, _ = tokens.issue_access_token(
        user_id=user_id,
        tenant_id=tenant_id,
        roles=roles,
        mfa_verified=mfa_verified,
        session_id=family_id,
        token_version=int(version),
        settings=settings,
        now=now,
    )
    plaintext, digest = tokens.new_opaque_token(tokens.REFRESH_TOKEN_PREFIX)
    await conn.execute(
        """
        INSERT INTO refresh_tokens (id, family_id, user_id, token_sha256, mfa_verified,
                                    issued_at, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        str(uuid.uuid4()),
        family_id,
        user_id,
        digest,
        mfa_verified,
        now,
        now + timedelta(seconds=settings.refresh_token_ttl_s),
    )
    return TokenPair(
        access_token=access,
        refresh_token=plaintext,
        expires_in_s=settings.access_token_ttl_s,
        mfa_verified=mfa_verified,
    )

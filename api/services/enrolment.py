"""First sign-in of an account an operator made: a one-time enrolment link.

``learnstream user create`` (infra/cli.py) makes the account with no password and
prints a link, ``<public_base_url>/dashboard#action=enrol&token=lst_...``. The token
is single use, expires after ``enrolment_link_ttl_s``, is stored only as its SHA-256
(``account_tokens``, purpose ``enrol``), and issuing or spending it is audited. The
dashboard page reads it from the URL fragment (never sent to a server), asks for a
password and POSTs both to ``/v1/auth/enrol`` (:func:`complete`); it then signs in,
and an account whose roles need MFA goes straight to TOTP enrolment with a QR code.
Issuing a new link for the same account kills the earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis

from api.exceptions import InvalidInputError
from api.services import audit, email, lockout, mfa, passwords, token_versions, tokens
from api.services.account_tokens import (
    TokenPurpose,
    consume_account_token,
    issue_account_token,
    revoke_all_refresh_tokens,
    unspendable,
)
from api.services.principals import Role
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.settings import Settings


@dataclass(frozen=True, slots=True)
class EnrolmentLink:
    """A printed enrolment link; ``expires_at`` UTC. The URL is shown once, never stored."""

    user_id: str
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Enrolled:
    """Whose password was just set; ``mfa_required``: the roles need TOTP before use."""

    user_id: str
    tenant_id: str
    email: str
    mfa_required: bool


async def issue_link(
    db: Queryable,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    actor: tuple[str, str | None],
    now: datetime,
) -> EnrolmentLink:
    """A new enrolment link for ``user_id`` (earlier ones stop working), audited."""
    ttl_s = settings.enrolment_link_ttl_s
    async with transaction(db) as conn:
        token = await issue_account_token(
            conn, user_id=user_id, purpose=TokenPurpose.ENROL, ttl_s=ttl_s, now=now
        )
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=actor,
            action=audit.Action.ENROLMENT_LINK_ISSUED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            details={"expires_in_s": ttl_s},
        )
    return EnrolmentLink(
        user_id, email.link(settings, "enrol", token), now + timedelta(seconds=ttl_s)
    )


async def complete(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    token: str,
    password: str,
    ip: str | None,
    now: datetime,
) -> Enrolled:
    """Spend an enrolment token and set the account's first password.

    The address counts as verified (the link reached its owner); earlier sessions, if
    any, end. InvalidInputError naming ``body.token`` for an unknown, used or expired
    token, naming ``body.password`` for a weak password (the token is then not spent).
    """
    row = await db.fetchrow(
        """
        SELECT u.id, u.tenant_id, u.email,
               coalesce((SELECT array_agg(r.role) FROM user_roles r WHERE r.user_id = u.id),
                        '{}') AS roles
        FROM account_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_sha256 = $1 AND t.purpose = $2 AND t.used_at IS NULL
          AND t.expires_at > $3 AND u.status = 'active'
        """,
        tokens.token_sha256(token),
        TokenPurpose.ENROL.value,
        now,
    )
    if row is None:
        raise unspendable(TokenPurpose.ENROL)
    problems = passwords.password_problems(password, email=row["email"])
    if problems:
        raise InvalidInputError("password is too weak", errors=problems)
    password_hash = await passwords.hash_password(password, profile=settings.password_hash_profile)
    async with transaction(db) as conn:
        user_id = await consume_account_token(
            conn, token=token, purpose=TokenPurpose.ENROL, now=now
        )
        await conn.execute(
            """
            UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL,
                email_verified_at = coalesce(email_verified_at, $3), updated_at = $3
            WHERE id = $1
            """,
            user_id,
            password_hash,
            now,
        )
        bumped = await token_versions.bump(conn, user_id=user_id)
        await revoke_all_refresh_tokens(conn, user_id=user_id, now=now)
        await audit.record(
            conn,
            tenant_id=row["tenant_id"],
            actor=("user", user_id),
            action=audit.Action.ENROLMENT_COMPLETED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            ip=ip,
        )
    await token_versions.announce(redis, settings, bumped)
    await lockout.reset(redis, settings, user_id=user_id)
    roles = frozenset(Role(r) for r in row["roles"])
    return Enrolled(user_id, row["tenant_id"], row["email"], mfa.mfa_required(roles))

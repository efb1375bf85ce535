"""TOTP second factor (RFC 6238 via pyotp) and one-time backup codes.

Rules: a code is accepted for the current 30 s step or one step either side
(clock drift), never for a step at or before the last accepted one (no replay);
backup codes are random, shown once, stored as SHA-256 and used once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp

from api.exceptions import InvalidInputError
from api.services import audit
from api.services.principals import Role
from api.services.transactions import transaction

# Roles whose powers are too broad to guard with a password alone.
MFA_REQUIRED_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.PLATFORM_OPERATOR})
BACKUP_CODE_COUNT = 10
# Steps of 30 s accepted either side of now, for phones whose clock drifts.
VALID_WINDOW_STEPS = 1
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes


def mfa_required(roles: frozenset[Role]) -> bool:
    """True if any of ``roles`` needs MFA before its powers are usable."""
    return not roles.isdisjoint(MFA_REQUIRED_ROLES)


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans as a QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def matching_step(
    secret: str, code: str, *, now: datetime, last_step: int | None = None
) -> int | None:
    """The TOTP time step ``code`` belongs to, or None if wrong, stale or replayed.

    ``now`` is a UTC datetime; ``last_step`` the last step accepted for this user.
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW_STEPS, current + VALID_WINDOW_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def code_at(secret: str, now: datetime) -> str:
    """The code an authenticator shows at ``now`` (tests and enrolment checks use it)."""
    return pyotp.TOTP(secret).at(now)


def new_backup_codes(count: int = BACKUP_CODE_COUNT) -> list[str]:
    """``count`` random codes like ``k7mq-4rtx`` (about 50 bits each)."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def backup_code_sha256(code: str) -> bytes:
    """Digest of a backup code, ignoring case, spaces and dashes as people type them."""
    normalized = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalized.encode()).digest()


# --- enrolment and backup codes (database) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A pending TOTP secret and the URI to scan; confirmed by the first valid code."""

    secret: str
    provisioning_uri: str


async def begin_enrolment(db: Any, *, user_id: str, issuer: str) -> Enrolment:
    """Store a fresh pending secret (replacing any earlier pending one)."""
    secret = new_totp_secret()
    address = await db.fetchval(
        "UPDATE users SET mfa_pending_secret = $2 WHERE id = $1 RETURNING email", user_id, secret
    )
    return Enrolment(secret, provisioning_uri(secret, account=address, issuer=issuer))


async def confirm_enrolment(
    db: Any, *, tenant_id: str, user_id: str, code: str, ip: str | None, now: datetime
) -> list[str]:
    """Turn the pending secret on if ``code`` matches it; returns fresh backup codes (shown once).

    InvalidInputError naming ``body.code`` when nothing is pending or the code is wrong.
    """
    async with transaction(db) as conn:
        pending = await conn.fetchval(
            "SELECT mfa_pending_secret FROM users WHERE id = $1 FOR UPDATE", user_id
        )
        step = matching_step(pending, code, now=now) if pending else None
        if step is None:
            raise InvalidInputError(
                "code does not match the secret being enrolled (start with /v1/auth/mfa/enrol)",
                field="body.code",
                reason="wrong code or no enrolment pending",
            )
        await conn.execute(
            """
            UPDATE users SET mfa_secret = mfa_pending_secret, mfa_pending_secret = NULL,
                mfa_enabled_at = $2, mfa_last_step = $3, updated_at = $2
            WHERE id = $1
            """,
            user_id,
            now,
            step,
        )
        codes = await _replace_backup_codes(conn, user_id=user_id)
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", user_id),
            action=audit.Action.MFA_ENROLLED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            ip=ip,
        )
    return codes


async def regenerate_backup_codes(
    db: Any, *, tenant_id: str, user_id: str, ip: str | None
) -> list[str]:
    """New backup codes; every earlier one stops working."""
    async with transaction(db) as conn:
        if not await conn.fetchval(
            "SELECT mfa_enabled_at IS NOT NULL FROM users WHERE id = $1", user_id
        ):
            raise InvalidInputError("MFA is not enabled", field="body", reason="enrol first")
        codes = await _replace_backup_codes(conn, user_id=user_id)
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", user_id),
            action=audit.Action.MFA_ENROLLED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            ip=ip,
            details={"backup_codes": "regenerated"},
        )
    return codes


async def disable(db: Any, *, tenant_id: str, user_id: str, actor_id: str, ip: str | None) -> None:
    """Turn MFA off and drop the backup codes (the caller checked password or admin rights)."""
    async with transaction(db) as conn:
        await conn.execute(
            """
            UPDATE users SET mfa_secret = NULL, mfa_pending_secret = NULL, mfa_enabled_at = NULL,
                mfa_last_step = NULL WHERE id = $1
            """,
            user_id,
        )
        await conn.execute("DELETE FROM mfa_backup_codes WHERE user_id = $1", user_id)
        await audit.record(
            conn,
            tenant_id=tenant_id,
            actor=("user", actor_id),
            action=audit.Action.MFA_DISABLED,
            outcome=audit.Outcome.SUCCESS,
            target_id=user_id,
            ip=ip,
        )


async def spend_backup_code(db: Any, *, user_id: str, code: str, now: datetime) -> bool:
    """True if ``code`` was an unused backup code of the user; it is used up now."""
    spent = await db.fetchval(
        """
        UPDATE mfa_backup_codes SET used_at = $3
        WHERE user_id = $1 AND code_sha256 = $2 AND used_at IS NULL RETURNING 1
        """,
        user_id,
        backup_code_sha256(code),
        now,
    )
    return spent is not None


async def _replace_backup_codes(conn: Any, *, user_id: str) -> list[str]:
    codes = new_backup_codes()
    await conn.execute("DELETE FROM mfa_backup_codes WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO mfa_backup_codes (user_id, code_sha256) VALUES ($1, $2)",
        [(user_id, backup_code_sha256(c)) for c in codes],
    )
    return codes

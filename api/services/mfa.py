"""TOTP second factor (RFC 6238 via pyotp) and one-time backup codes.

Rules: a code is accepted for the current 30 s step or one step either side
(clock drift), never for a step at or before the last accepted one (no replay);
backup codes are random, shown once, stored as SHA-256 and used once.

MFA settings of an account with MFA on (re-enrolment, backup codes, turning it off)
change only from a session that passed MFA: a session signed in with the password
alone cannot replace the factor that guards it. Confirming an enrolment revokes the
user's sessions that did not pass MFA and ends every earlier access token.

TOTP secrets are encrypted at rest with AES-256-GCM, bound to their user id (the
additional data), stored as ``enc1:<key id>:<base64url(nonce || ciphertext)>``. The
key id is a fingerprint of the key, so keys need no names: the first key of
``settings.mfa_encryption_keys`` encrypts, every listed key decrypts. Unset, the key
is this installation's generated one. Secrets stored in plain text (before
encryption at rest) or under an older key are re-encrypted by ``reseal_all``
(``python -m api.mfa_rekey``, run by ``python -m api`` at start) and at sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio import Redis

from api.exceptions import InvalidInputError, NotAuthenticatedError, NotFoundError
from api.services import audit, token_versions
from api.services.principals import Role
from api.services.transactions import transaction
from learnstream.db import Queryable
from learnstream.exceptions import ConfigurationError
from learnstream.installation_secrets import installation_secret
from learnstream.settings import Settings, parse_aes_keys

# Roles whose powers are too broad to guard with a password alone.
MFA_REQUIRED_ROLES = frozenset({Role.ADMIN, Role.OPERATOR, Role.PLATFORM_OPERATOR})
BACKUP_CODE_COUNT = 10
# Steps of 30 s accepted either side of now, for phones whose clock drifts.
VALID_WINDOW_STEPS = 1
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes
# Encryption at rest of TOTP secrets.
SEALED_PREFIX = "enc1"
MFA_KEY_NAME = "mfa_encryption_key"  # file of the generated key under <data_dir>/secrets/
_NONCE_BYTES = 12
_AAD_LABEL = b"learnstream totp secret v1|"
_KEY_ID_LABEL = b"learnstream mfa key id|"


def mfa_required(roles: frozenset[Role]) -> bool:
    """True if any of ``roles`` needs MFA before its powers are usable."""
    return not roles.isdisjoint(MFA_REQUIRED_ROLES)


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app scans as a QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """``uri`` (an ``otpauth://`` URI) as an SVG QR code, drawn server-side with segno.

    Plain SVG with no script or style, so the page inserts it under its CSP; 4 px per
    module with the standard quiet zone.
    """
    buffer = io.BytesIO()
    segno.make(uri, error="m", micro=False).save(
        buffer, kind="svg", scale=4, xmldecl=False, svgclass="totp-qr", lineclass=None
    )
    return buffer.getvalue().decode()


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


# --- encryption at rest ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Keyring:
    """AES-256-GCM keys by key id; ``current_id`` encrypts, all decrypt."""

    current_id: str
    ciphers: Mapping[str, AESGCM]


@dataclass(frozen=True, slots=True)
class Opened:
    """A decrypted TOTP secret; ``stale`` if stored in plain text or under an older key."""

    secret: str
    stale: bool


def key_id(key: bytes) -> str:
    """The 8-hex-digit id stored with what ``key`` encrypted (a fingerprint, not the key)."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:8]


def keyring(settings: Settings) -> Keyring:
    """The keys from ``settings.mfa_encryption_keys``, else this installation's own key."""
    if settings.mfa_encryption_keys is not None:
        return _keyring(settings.mfa_encryption_keys.get_secret_value())
    return _keyring(installation_secret(settings.data_dir, MFA_KEY_NAME))


@lru_cache(maxsize=8)
def _keyring(text: str) -> Keyring:
    keys = parse_aes_keys(text)
    return Keyring(key_id(keys[0]), {key_id(key): AESGCM(key) for key in keys})


def seal(secret: str, *, user_id: str, ring: Keyring) -> str:
    """``secret`` encrypted under the current key, bound to ``user_id``."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = ring.ciphers[ring.current_id].encrypt(
        nonce, secret.encode(), _AAD_LABEL + user_id.encode()
    )
    blob = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    return f"{SEALED_PREFIX}:{ring.current_id}:{blob}"


def open_sealed(stored: str, *, user_id: str, ring: Keyring) -> Opened:
    """The secret in a stored value; a plain (pre-encryption) value passes as stale.

    ConfigurationError if its key is not in the keyring or it does not decrypt (wrong
    key, altered, or moved from another user's row).
    """
    if not stored.startswith(SEALED_PREFIX + ":"):
        return Opened(stored, stale=True)  # base32 from before encryption at rest
    _, kid, blob = stored.split(":", 2)
    cipher = ring.ciphers.get(kid)
    if cipher is None:
        raise ConfigurationError(
            f"the TOTP secret of user {user_id} is encrypted with key id {kid}, which is not "
            "in LEARNSTREAM_MFA_ENCRYPTION_KEYS; add that key back (after the current one)"
        )
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    try:
        plain = cipher.decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD_LABEL + user_id.encode()
        )
    except InvalidTag as exc:
        raise ConfigurationError(
            f"the TOTP secret of user {user_id} does not decrypt with key id {kid}: "
            "altered, or copied from another account"
        ) from exc
    return Opened(plain.decode(), stale=kid != ring.current_id)


async def reseal_all(db: Queryable, settings: Settings, *, decrypt: bool = False) -> int:
    """Re-encrypt every TOTP secret not under the current key; returns how many changed.

    Safe to run from several processes at once: each row is replaced only if it still
    holds the value read. ``decrypt`` writes plain text instead, only to downgrade
    below migration 0083.
    """
    ring = keyring(settings)
    current = f"{SEALED_PREFIX}:{ring.current_id}:"
    rows = await db.fetch(
        """
        SELECT id, mfa_secret, mfa_pending_secret FROM users
        WHERE (mfa_secret IS NOT NULL AND ($1 OR mfa_secret NOT LIKE $2 || '%'))
           OR (mfa_pending_secret IS NOT NULL AND ($1 OR mfa_pending_secret NOT LIKE $2 || '%'))
        """,
        decrypt,
        current,
    )
    changed = 0
    for row in rows:
        user_id = str(row["id"])
        for column in ("mfa_secret", "mfa_pending_secret"):
            stored = row[column]
            if stored is None:
                continue
            opened = open_sealed(stored, user_id=user_id, ring=ring)
            if decrypt:
                replacement = opened.secret
            elif opened.stale:
                replacement = seal(opened.secret, user_id=user_id, ring=ring)
            else:
                continue
            if replacement == stored:
                continue
            status = await db.execute(
                f"UPDATE users SET {column} = $3 WHERE id = $1 AND {column} = $2",
                user_id,
                stored,
                replacement,
            )
            changed += int(status.split()[-1])
    return changed


# --- enrolment and backup codes (database) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A pending TOTP secret and the URI to scan; confirmed by the first valid code."""

    secret: str
    provisioning_uri: str


def _refuse_without_mfa_session(mfa_enabled: bool, session_mfa_verified: bool) -> None:
    # A password-only session (e.g. a refresh token from before enrolment) must not be
    # able to swap the factor that protects the account.
    if mfa_enabled and not session_mfa_verified:
        raise NotAuthenticatedError(
            "MFA is on for this account: sign in with MFA before changing MFA settings",
            field="header.Authorization",
            reason="MFA sign-in required",
        )


async def begin_enrolment(
    db: Queryable,
    *,
    user_id: str,
    issuer: str,
    settings: Settings,
    session_mfa_verified: bool = False,
) -> Enrolment:
    """Store a fresh pending secret (replacing any earlier pending one).

    With MFA already on, only a session that passed MFA may start a re-enrolment
    (NotAuthenticatedError otherwise).
    """
    secret = new_totp_secret()
    sealed = seal(secret, user_id=user_id, ring=keyring(settings))
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            "SELECT email, mfa_enabled_at FROM users WHERE id = $1 FOR UPDATE", user_id
        )
        if row is None:
            raise NotFoundError(f"no user {user_id}", field="path.user_id", reason="not found")
        _refuse_without_mfa_session(row["mfa_enabled_at"] is not None, session_mfa_verified)
        await conn.execute(
            "UPDATE users SET mfa_pending_secret = $2 WHERE id = $1", user_id, sealed
        )
    return Enrolment(secret, provisioning_uri(secret, account=row["email"], issuer=issuer))


async def confirm_enrolment(
    db: Queryable,
    redis: Redis,
    settings: Settings,
    *,
    tenant_id: str,
    user_id: str,
    code: str,
    ip: str | None,
    now: datetime,
    session_mfa_verified: bool = False,
) -> list[str]:
    """Turn the pending secret on if ``code`` matches it; returns fresh backup codes (shown once).

    InvalidInputError naming ``body.code`` when nothing is pending or the code is wrong;
    NotAuthenticatedError when MFA is already on and the session did not pass it.
    The user's sessions that did not pass MFA are revoked and every earlier access
    token ends (the caller's too, if it did not pass MFA: sign in again with MFA).
    """
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            "SELECT mfa_pending_secret, mfa_enabled_at FROM users WHERE id = $1 FOR UPDATE",
            user_id,
        )
        if row is None:
            raise NotFoundError(f"no user {user_id}", field="path.user_id", reason="not found")
        _refuse_without_mfa_session(row["mfa_enabled_at"] is not None, session_mfa_verified)
        pending = row["mfa_pending_secret"]
        secret = (
            open_sealed(pending, user_id=user_id, ring=keyring(settings)).secret
            if pending
            else None
        )
        step = matching_step(secret, code, now=now) if secret else None
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
        # Sign-ins from before MFA (password only) would otherwise stay valid for the
        # refresh token's lifetime, as a way around the factor just enrolled.
        await conn.execute(
            """
            UPDATE refresh_tokens SET revoked_at = $2
            WHERE user_id = $1 AND NOT mfa_verified AND revoked_at IS NULL
            """,
            user_id,
            now,
        )
        bumped = await token_versions.bump(conn, user_id=user_id)
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
    await token_versions.announce(redis, settings, bumped)
    return codes


async def regenerate_backup_codes(
    db: Queryable, *, tenant_id: str, user_id: str, ip: str | None
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


async def disable(
    db: Queryable, *, tenant_id: str, user_id: str, actor_id: str, ip: str | None
) -> None:
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


async def spend_backup_code(db: Queryable, *, user_id: str, code: str, now: datetime) -> bool:
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


async def _replace_backup_codes(conn: Queryable, *, user_id: str) -> list[str]:
    codes = new_backup_codes()
    await conn.execute("DELETE FROM mfa_backup_codes WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO mfa_backup_codes (user_id, code_sha256) VALUES ($1, $2)",
        [(user_id, backup_code_sha256(c)) for c in codes],
    )
    return codes

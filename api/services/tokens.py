"""Signed access tokens (JWT, HS256), MFA challenge tokens and opaque single-use tokens.

Access tokens are short-lived and carry tenant, roles, whether MFA was passed, the
sign-in (refresh family) they belong to and the user's token version at issue; a
request checks that version against the cached current one (api/services/
token_versions.py), so a security event ends every earlier access token at once.
Refresh tokens and mailed tokens are opaque random strings of which only a SHA-256
is stored.

The signing secret is ``settings.jwt_secret`` or, unset, this installation's
generated one (learnstream/installation_secrets.py); there is no public default.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from api.exceptions import NotAuthenticatedError
from api.services.principals import Principal, PrincipalKind, Role
from learnstream.installation_secrets import installation_secret
from learnstream.settings import Settings

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"
MFA_CHALLENGE_TYPE = "mfa_challenge"
# Time allowed between the password step and the TOTP step of one sign-in.
MFA_CHALLENGE_TTL_S = 300
REFRESH_TOKEN_PREFIX = "lsr_"
ACCOUNT_TOKEN_PREFIX = "lst_"
# File name of the generated signing secret under <data_dir>/secrets/.
JWT_SECRET_NAME = "jwt_secret"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says; ``expires_at`` is UTC.

    ``session_id`` is the refresh-token family of the sign-in that issued it;
    ``token_version`` the user's token version at issue (>= 0).
    """

    user_id: str
    tenant_id: str
    roles: frozenset[Role]
    mfa_verified: bool
    jti: str
    expires_at: datetime
    session_id: str
    token_version: int

    def principal(self) -> Principal:
        """The request principal these claims describe."""
        return Principal(
            tenant_id=self.tenant_id,
            subject_id=self.user_id,
            kind=PrincipalKind.USER,
            roles=self.roles,
            mfa_verified=self.mfa_verified,
        )


def issue_access_token(
    *,
    user_id: str,
    tenant_id: str,
    roles: frozenset[Role],
    mfa_verified: bool,
    session_id: str,
    token_version: int,
    settings: Settings,
    now: datetime,
) -> tuple[str, AccessClaims]:
    """A signed access token valid for ``settings.access_token_ttl_s`` from ``now`` (UTC)."""
    expires_at = now + timedelta(seconds=settings.access_token_ttl_s)
    claims = AccessClaims(
        user_id=user_id,
        tenant_id=tenant_id,
        roles=roles,
        mfa_verified=mfa_verified,
        jti=uuid.uuid4().hex,
        expires_at=expires_at,
        session_id=session_id,
        token_version=token_version,
    )
    payload = {
        "iss": settings.jwt_issuer,
        "sub": user_id,
        "tid": tenant_id,
        "roles": sorted(role.value for role in roles),
        "mfa": mfa_verified,
        "sid": session_id,
        "ver": token_version,
        "typ": ACCESS_TOKEN_TYPE,
        "jti": claims.jti,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return _sign(payload, settings), claims


def decode_access_token(token: str, *, settings: Settings) -> AccessClaims:
    """The claims of a valid, unexpired access token; NotAuthenticatedError otherwise."""
    payload = _verify(token, settings, expected_type=ACCESS_TOKEN_TYPE)
    try:
        roles = frozenset(Role(role) for role in payload["roles"])
        version = payload["ver"]
        # Tokens from before token versions lack "ver"/"sid": refused, the client refreshes.
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise TypeError("ver must be a non-negative integer")
        return AccessClaims(
            user_id=str(payload["sub"]),
            tenant_id=str(payload["tid"]),
            roles=roles,
            mfa_verified=bool(payload["mfa"]),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            session_id=str(payload["sid"]),
            token_version=version,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise _invalid("access token lacks a required claim; refresh it") from exc


def issue_mfa_challenge(*, user_id: str, tenant_id: str, settings: Settings, now: datetime) -> str:
    """A token proving the password step passed; exchanged with a TOTP code for tokens."""
    payload = {
        "iss": settings.jwt_issuer,
        "sub": user_id,
        "tid": tenant_id,
        "typ": MFA_CHALLENGE_TYPE,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + MFA_CHALLENGE_TTL_S,
    }
    return _sign(payload, settings)


def decode_mfa_challenge(token: str, *, settings: Settings) -> tuple[str, str]:
    """``(user_id, tenant_id)`` of a valid MFA challenge token."""
    payload = _verify(token, settings, expected_type=MFA_CHALLENGE_TYPE, field="body.mfa_token")
    return str(payload["sub"]), str(payload["tid"])


def new_opaque_token(prefix: str) -> tuple[str, bytes]:
    """A random token (256 bits) and the SHA-256 digest to store in its place."""
    plaintext = prefix + secrets.token_urlsafe(32)
    return plaintext, token_sha256(plaintext)


def token_sha256(plaintext: str) -> bytes:
    """The digest under which an opaque token is stored and looked up."""
    return hashlib.sha256(plaintext.strip().encode()).digest()


def signing_secret(settings: Settings) -> str:
    """The HS256 key: ``settings.jwt_secret``, else this installation's generated one."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    return installation_secret(settings.data_dir, JWT_SECRET_NAME)


def _sign(payload: dict[str, object], settings: Settings) -> str:
    return jwt.encode(payload, signing_secret(settings), algorithm=ALGORITHM)


def _verify(
    token: str, settings: Settings, *, expected_type: str, field: str = "header.Authorization"
) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            signing_secret(settings),
            algorithms=[ALGORITHM],  # never taken from the token header ("alg": "none" attacks)
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _invalid("token has expired; refresh it or sign in again", field) from exc
    except jwt.InvalidTokenError as exc:
        raise _invalid(f"token is not valid: {exc}", field) from exc
    if payload.get("typ") != expected_type:
        raise _invalid(f"token is not an {expected_type} token", field)
    return payload


def _invalid(detail: str, field: str = "header.Authorization") -> NotAuthenticatedError:
    return NotAuthenticatedError(detail, field=field, reason=detail)

"""Access and MFA-challenge JWTs: round trip, expiry, tampering, type confusion."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import SecretStr

from api.exceptions import NotAuthenticatedError
from api.services import tokens
from api.services.principals import PrincipalKind, Role
from learnstream.settings import Settings

SETTINGS = Settings(jwt_secret=SecretStr("unit-test-secret-" + "x" * 32), access_token_ttl_s=900)


def issue(now: datetime | None = None, **overrides: object) -> str:
    token, _ = tokens.issue_access_token(
        user_id="u-1",
        tenant_id="acme",
        roles=frozenset({Role.TEACHER, Role.LEARNER}),
        mfa_verified=False,
        session_id="f-1",
        token_version=3,
        settings=SETTINGS,
        now=now or datetime.now(UTC),
    )
    return token


def test_access_token_round_trips_to_a_principal() -> None:
    claims = tokens.decode_access_token(issue(), settings=SETTINGS)
    principal = claims.principal()
    assert principal.tenant_id == "acme"
    assert principal.subject_id == "u-1"
    assert principal.kind is PrincipalKind.USER
    assert principal.roles == {Role.TEACHER, Role.LEARNER}
    assert principal.mfa_verified is False


def test_expired_token_is_refused() -> None:
    long_ago = datetime.now(UTC) - timedelta(seconds=SETTINGS.access_token_ttl_s + 5)
    with pytest.raises(NotAuthenticatedError, match="expired"):
        tokens.decode_access_token(issue(long_ago), settings=SETTINGS)


def test_token_signed_with_another_secret_is_refused() -> None:
    other = SETTINGS.model_copy(update={"jwt_secret": SecretStr("another-secret-" + "y" * 32)})
    with pytest.raises(NotAuthenticatedError):
        tokens.decode_access_token(issue(), settings=other)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_unsigned_token_is_refused() -> None:
    payload = issue().split(".")[1]
    forged = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."
    with pytest.raises(NotAuthenticatedError):
        tokens.decode_access_token(forged, settings=SETTINGS)


def test_role_escalation_by_editing_the_payload_breaks_the_signature() -> None:
    token = issue()
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = ["admin"]
    forged_payload = b64(json.dumps(claims).encode())
    with pytest.raises(NotAuthenticatedError):
        tokens.decode_access_token(f"{header}.{forged_payload}.{signature}", settings=SETTINGS)


def test_mfa_challenge_is_not_an_access_token_and_back() -> None:
    challenge = tokens.issue_mfa_challenge(
        user_id="u-1", tenant_id="acme", settings=SETTINGS, now=datetime.now(UTC)
    )
    assert tokens.decode_mfa_challenge(challenge, settings=SETTINGS) == ("u-1", "acme")
    with pytest.raises(NotAuthenticatedError, match="access"):
        tokens.decode_access_token(challenge, settings=SETTINGS)
    with pytest.raises(NotAuthenticatedError):
        tokens.decode_mfa_challenge(issue(), settings=SETTINGS)


def test_opaque_tokens_are_random_and_stored_as_their_digest() -> None:
    first, digest = tokens.new_opaque_token("lsr_")
    second, _ = tokens.new_opaque_token("lsr_")
    assert first.startswith("lsr_")
    assert first != second
    assert tokens.token_sha256(first) == digest
    assert len(digest) == 32


def test_claims_carry_the_session_and_token_version() -> None:
    claims = tokens.decode_access_token(issue(), settings=SETTINGS)
    assert (claims.session_id, claims.token_version) == ("f-1", 3)


def test_token_without_a_version_is_refused() -> None:
    # Tokens from before token versions (or minted by hand) cannot skip the check.
    claims = jwt.decode(issue(), options={"verify_signature": False})
    secret = SETTINGS.jwt_secret.get_secret_value() if SETTINGS.jwt_secret else ""
    for dropped in ("ver", "sid"):
        token = jwt.encode({k: v for k, v in claims.items() if k != dropped}, secret, "HS256")
        with pytest.raises(NotAuthenticatedError, match="required claim"):
            tokens.decode_access_token(token, settings=SETTINGS)
    negative = jwt.encode({**claims, "ver": -1}, secret, "HS256")
    with pytest.raises(NotAuthenticatedError, match="required claim"):
        tokens.decode_access_token(negative, settings=SETTINGS)

"""ID token validation of single sign-on (api/services/oidc.py): what OIDC Core §3.1.3.7 refuses."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from api.services.oidc import SignInRefused, validate_id_token

ISSUER, CLIENT, NONCE, NOW = "https://idp.example.org", "learnstream", "n-0S6_WzA2Mj", 1_800_000_000
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
JWKS = KeySet([KEY]).as_dict(private=False)


def token(key: RSAKey = KEY, **changes: Any) -> str:
    claims = {
        "iss": ISSUER,
        "sub": "ada",
        "aud": CLIENT,
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": NONCE,
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def validate(id_token: str, jwks: Any = JWKS) -> dict[str, Any]:
    return validate_id_token(id_token, jwks, issuer=ISSUER, client_id=CLIENT, nonce=NONCE, now=NOW)


def test_a_valid_token_gives_its_claims() -> None:
    assert validate(token())["sub"] == "ada"
    assert validate(token(aud=[CLIENT, "other"], azp=CLIENT))["sub"] == "ada"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-client"},
        {"iss": "https://evil.example.org"},
        {"nonce": "replayed-or-foreign"},
        {"nonce": None},
        {"exp": NOW - 3600},
        {"iat": None},
        {"aud": [CLIENT, "other"], "azp": "other"},
    ],
)
def test_claims_that_do_not_match_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(SignInRefused):
        validate(token(**changes))


def test_a_token_signed_by_another_key_is_refused() -> None:
    with pytest.raises(SignInRefused):
        validate(token(key=OTHER_KEY))


def test_tampered_claims_are_refused() -> None:
    header, _payload, signature = token().split(".")
    forged = token(sub="mallory").split(".")[1]
    with pytest.raises(SignInRefused):
        validate(f"{header}.{forged}.{signature}")


def test_a_rotated_key_set_validates_new_tokens_only() -> None:
    rotated = KeySet([OTHER_KEY]).as_dict(private=False)
    assert validate(token(key=OTHER_KEY), rotated)["sub"] == "ada"
    with pytest.raises(SignInRefused):
        validate(token(), rotated)

"""The API-key format, digest and header parsing shared by ingest/ and api/."""

from __future__ import annotations

import hashlib

import pytest

from learnstream import apikeys


def test_generated_key_parses_back_to_its_key_id() -> None:
    key_id, plaintext = apikeys.generate_api_key()
    assert key_id.startswith("lsk_")
    assert plaintext.startswith(key_id + "_")
    assert apikeys.parse_api_key(plaintext) == key_id


def test_generated_keys_differ() -> None:
    assert apikeys.generate_api_key() != apikeys.generate_api_key()


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "lsk_",
        "lsk_abc",
        "lsk_3f9a1c2b",
        "lsk_3f9a1c2b_short",
        "xyz_3f9a1c2b_" + "a" * 40,
        "lsk_NOTHEX12_" + "a" * 40,
        "Bearer lsk_3f9a1c2b_" + "a" * 40,
    ],
)
def test_malformed_keys_are_rejected(presented: str) -> None:
    with pytest.raises(apikeys.InvalidApiKeyError):
        apikeys.parse_api_key(presented)


def test_digest_is_sha256_of_the_whole_key() -> None:
    _, plaintext = apikeys.generate_api_key()
    assert apikeys.key_sha256(plaintext) == hashlib.sha256(plaintext.encode()).digest()


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer lsk_aa_bb", None, "lsk_aa_bb"),
        ("bearer  lsk_aa_bb ", None, "lsk_aa_bb"),
        (None, "lsk_x_y", "lsk_x_y"),
        ("Bearer lsk_from_auth", "lsk_from_header", "lsk_from_header"),
        ("Bearer eyJhbGciOi.jwt.token", None, None),
        ("Basic lsk_aa_bb", None, None),
        (None, None, None),
    ],
)
def test_key_is_taken_from_bearer_or_x_api_key(
    authorization: str | None, x_api_key: str | None, expected: str | None
) -> None:
    assert apikeys.bearer_or_header_key(authorization, x_api_key) == expected

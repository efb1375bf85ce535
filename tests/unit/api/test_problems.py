"""Problem+json bodies, cursors, and the production refusal of default secrets."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from api.exceptions import FieldProblem, InvalidInputError, NotAuthenticatedError
from api.pagination import (
    decode_cursor,
    encode_cursor,
    id_key,
    next_cursor,
    offset_key,
    text_key,
    uuid_key,
)
from learnstream.problems import problem_body
from learnstream.settings import DEV_JWT_SECRET, Settings


def test_problem_body_has_rfc9457_members_and_field_errors() -> None:
    body = problem_body(
        status=422,
        slug="invalid-input",
        title="Invalid input",
        detail="cycle",
        instance="/v1/skills",
        errors=[FieldProblem("body.prerequisites", "would close a cycle a -> b -> a")],
    )
    assert set(body) == {"type", "title", "status", "detail", "instance", "errors"}
    assert body["type"].startswith("urn:learnstream:problem:")
    assert body["errors"] == [
        {"field": "body.prerequisites", "reason": "would close a cycle a -> b -> a"}
    ]


def test_field_and_reason_become_the_first_error() -> None:
    error = InvalidInputError("bad", field="body.x", reason="too big")
    assert error.errors == [FieldProblem("body.x", "too big")]


def test_401_carries_www_authenticate() -> None:
    assert NotAuthenticatedError("no").headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", ["0", "3f1c-uuid-ish", "ünïcode"])
def test_cursor_round_trips(key: str) -> None:
    assert decode_cursor(encode_cursor(key), text_key) == key


def test_forged_cursor_names_the_query_field() -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_cursor("%%%", text_key)
    assert caught.value.errors[0].field == "query.cursor"


@pytest.mark.parametrize(
    ("key", "parse"),
    [
        ("9" * 25, offset_key),
        ("²", offset_key),
        ("-1", offset_key),
        ("0", id_key),
        (str(2**63), id_key),
        ("not-a-uuid", uuid_key),
        ("", text_key),
    ],
)
def test_cursor_keys_out_of_kind_or_range_are_refused(key: str, parse: Any) -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_cursor(encode_cursor(key), parse)
    assert caught.value.errors[0].field == "query.cursor"


def test_issued_keys_decode_to_their_kind() -> None:
    assert decode_cursor(encode_cursor(str(2**63 - 1)), id_key) == 2**63 - 1
    assert decode_cursor(encode_cursor("0"), offset_key) == 0
    uuid = "3f1c2b1a-0000-4000-8000-000000000001"
    assert decode_cursor(encode_cursor(uuid.upper()), uuid_key) == uuid
    assert decode_cursor(None, id_key) is None


def test_next_cursor_only_when_the_page_is_full() -> None:
    assert next_cursor(["a", "b"], 2) == encode_cursor("b")
    assert next_cursor(["a"], 2) is None
    assert next_cursor([], 2) is None


def test_production_refuses_default_or_short_jwt_secret() -> None:
    real = {
        "environment": "production",
        "kafka_bootstrap": "kafka-1:9093",
        "kafka_security_protocol": "SASL_SSL",
        "public_base_url": "https://learn.example.org",
        "mfa_encryption_keys": SecretStr(base64.b64encode(bytes(range(32))).decode()),
    }
    strong = SecretStr("Vq3x9-LpR2mZt7KwYc4NbF8hJd6GsA1eUo5iXyQ0")
    for secret in (DEV_JWT_SECRET, "short"):
        with pytest.raises(ValidationError, match="JWT_SECRET"):
            Settings(**real, jwt_secret=SecretStr(secret))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cheapest"):
        Settings(
            **real,  # type: ignore[arg-type]
            jwt_secret=strong,
            password_hash_profile="cheapest",
        )
    assert Settings(**real, jwt_secret=strong).environment == "production"  # type: ignore[arg-type]

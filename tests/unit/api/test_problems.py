"""Problem+json bodies, cursors, and the production refusal of default secrets."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr, ValidationError

from api.exceptions import FieldProblem, InvalidInputError, NotAuthenticatedError
from api.pagination import decode_cursor, encode_cursor, next_cursor
from api.problems import problem_body
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
    assert decode_cursor(encode_cursor(key)) == key


def test_forged_cursor_names_the_query_field() -> None:
    with pytest.raises(InvalidInputError) as caught:
        decode_cursor("%%%")
    assert caught.value.errors[0].field == "query.cursor"


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

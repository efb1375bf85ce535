"""Production mode refuses what would leave it open: weak or missing secrets, cleartext
Kafka (unless acknowledged), an http:// public URL. Other modes refuse public secrets."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from learnstream.settings import (
    DEV_JWT_SECRET,
    Settings,
    estimated_entropy_bits,
    parse_aes_keys,
    secret_weakness,
)

STRONG_SECRET = "Vq3x9-LpR2mZt7KwYc4NbF8hJd6GsA1eUo5iXyQ0"
KEY = base64.b64encode(bytes(range(7, 39))).decode()


def production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "production",
        "kafka_bootstrap": "kafka-1:9093",
        "kafka_security_protocol": "SASL_SSL",
        "public_base_url": "https://learn.example.org",
        "jwt_secret": SecretStr(STRONG_SECRET),
        "mfa_encryption_keys": SecretStr(KEY),
    }
    values.update(overrides)
    return Settings(**values)


def test_a_complete_production_configuration_starts() -> None:
    assert production().environment == "production"


def test_production_refuses_weak_secret_plaintext_kafka_http_url() -> None:
    for weak in ("a" * 32, "ab" * 32, "short", DEV_JWT_SECRET, "0123456789abcdef" * 2):
        with pytest.raises(ValidationError, match="LEARNSTREAM_JWT_SECRET"):
            production(jwt_secret=SecretStr(weak))
    with pytest.raises(ValidationError, match="LEARNSTREAM_JWT_SECRET is not set"):
        production(jwt_secret=None)
    with pytest.raises(ValidationError, match="LEARNSTREAM_MFA_ENCRYPTION_KEYS is not set"):
        production(mfa_encryption_keys=None)
    repeated = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(ValidationError, match="repeats bytes"):
        production(mfa_encryption_keys=SecretStr(repeated))
    for protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        with pytest.raises(ValidationError, match="KAFKA_SECURITY_PROTOCOL"):
            production(kafka_security_protocol=protocol)
    for url in ("http://learn.example.org", "http://127.0.0.1:8001"):
        with pytest.raises(ValidationError, match="https://"):
            production(public_base_url=url)


def test_acknowledged_plaintext_kafka_starts_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="learnstream.settings"):
        settings = production(
            kafka_security_protocol="PLAINTEXT", kafka_plaintext_acknowledged=True
        )
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert "unencrypted" in caplog.text


def test_every_mode_refuses_the_public_secret_and_malformed_keys() -> None:
    with pytest.raises(ValidationError, match="public default"):
        Settings(jwt_secret=SecretStr(DEV_JWT_SECRET))
    with pytest.raises(ValidationError, match="decodes to 3 bytes"):
        Settings(mfa_encryption_keys=SecretStr("YWJj"))
    with pytest.raises(ValidationError, match="not base64"):
        Settings(mfa_encryption_keys=SecretStr("not base64 at all!"))
    # Unset is fine outside production: each installation generates its own.
    assert Settings().jwt_secret is None


def test_secret_strength_rules() -> None:
    assert estimated_entropy_bits("a" * 64) == 0
    assert estimated_entropy_bits("ab" * 32) == pytest.approx(64)
    assert estimated_entropy_bits(STRONG_SECRET) > 128
    assert secret_weakness(STRONG_SECRET) is None
    assert "low-entropy" in (secret_weakness("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab") or "")
    assert "repeated" in (secret_weakness("0123456789abcdef" * 2) or "")
    assert parse_aes_keys(f"{KEY}, {KEY.rstrip('=')}") == [bytes(range(7, 39))] * 2

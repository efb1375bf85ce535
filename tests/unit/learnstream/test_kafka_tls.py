"""Faust (aiokafka) workers use TLS when the settings say SSL or SASL_SSL, like the
librdkafka clients do: a processor must reach a cluster that only listens with TLS."""

from __future__ import annotations

import ssl

import certifi
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from learnstream.kafka import faust_broker_kwargs
from learnstream.settings import Settings


def _aiokafka_auth(settings: Settings) -> dict[str, object]:
    kwargs = faust_broker_kwargs(settings)
    return dict(credentials_to_aiokafka_auth(kwargs.get("broker_credentials")))


def test_sasl_ssl_reaches_faust_workers_as_sasl_ssl() -> None:
    auth = _aiokafka_auth(
        Settings(
            kafka_bootstrap="kafka:9093",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="learnstream",
            kafka_sasl_password=SecretStr("pw"),
            kafka_ssl_ca_location=certifi.where(),
        )
    )
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_sasl_plaintext_stays_plaintext() -> None:
    auth = _aiokafka_auth(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="u",
            kafka_sasl_password=SecretStr("p"),
        )
    )
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth.get("ssl_context") is None


def test_ssl_without_sasl_uses_tls() -> None:
    auth = _aiokafka_auth(Settings(kafka_security_protocol="SSL"))
    assert auth["security_protocol"] == "SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)

"""Settings validation and the Kafka helper's pure parts: topic names, keys, configs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from learnstream.kafka import (
    Stream,
    client_config,
    consumer_config,
    faust_broker_kwargs,
    learner_key,
    producer_config,
)
from learnstream.settings import Settings


def test_topic_names_follow_namespace_stream_version() -> None:
    settings = Settings(kafka_topic_namespace="learnstream")
    assert settings.topic(Stream.ATTEMPTS) == "learnstream.attempts.v1"
    assert settings.topic(Stream.DEADLETTER) == "learnstream.deadletter.v1"


def test_learner_key_keeps_tenant_and_user() -> None:
    assert learner_key("acme", "u-1") == b"acme:u-1"
    assert learner_key("acme", "u-1") != learner_key("other", "u-1")


def test_producer_is_idempotent_with_acks_all() -> None:
    config = producer_config(Settings(), delivery_timeout_ms=1234)
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["message.timeout.ms"] == 1234


def test_connection_set_up_fails_within_a_request_even_when_deliveries_wait_longer() -> None:
    config = producer_config(Settings(ingest_delivery_timeout_ms=5_000), delivery_timeout_ms=30_000)
    assert config["message.timeout.ms"] == 30_000
    assert config["socket.connection.setup.timeout.ms"] == 5_000


def test_consumer_commits_only_when_told() -> None:
    config = consumer_config(Settings(consumer_session_timeout_s=4), "g")
    assert config["enable.auto.commit"] is False
    assert config["session.timeout.ms"] == 4000


def test_sasl_settings_reach_every_client() -> None:
    settings = Settings(
        kafka_bootstrap="b1:9093,b2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("s3cret"),
    )
    assert client_config(settings)["sasl.password"] == "s3cret"
    assert faust_broker_kwargs(settings)["broker"] == "kafka://b1:9093;kafka://b2:9093"
    assert faust_broker_kwargs(settings)["broker_credentials"] is not None


def test_production_refuses_loopback_broker() -> None:
    with pytest.raises(ValidationError, match="LEARNSTREAM_KAFKA_BOOTSTRAP"):
        Settings(environment="production")


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNSTREAM_KAFKA_BOOTSTRAP", "kafka.internal:9092")
    monkeypatch.setenv("LEARNSTREAM_TOPIC_PARTITIONS", "24")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka.internal:9092"
    assert settings.topic_partitions == 24


def test_as_env_round_trips_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(kafka_topic_namespace="t123", topic_partitions=3, log_json=False)
    for name, value in original.as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original

"""infra/compose/docker-compose.yml as docker-compose itself reads it (Debian's
docker-compose, installed by ``make setup-compose``; nothing is started):

* the file is valid and renders with the secrets given in the environment;
* every Learnstream service's rendered environment parses as production settings;
* it refuses to render while a secret is missing, so it has no literal default.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from learnstream.settings import REPO_ROOT, Settings
from processors.__main__ import PROCESSORS

COMPOSE = REPO_ROOT / "infra" / "compose" / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
# What an operator must provide (infra/compose/example.env); values stand in for secrets.
REQUIRED = {
    "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
    "POSTGRES_SERVICE_PASSWORD": secrets.token_urlsafe(24),
    "REDIS_PASSWORD": secrets.token_urlsafe(24),
    "LEARNSTREAM_JWT_SECRET": secrets.token_urlsafe(48),
    "LEARNSTREAM_MFA_ENCRYPTION_KEYS": base64.b64encode(secrets.token_bytes(32)).decode(),
    "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(24),
    "LEARNSTREAM_SMTP_HOST": "smtp.example.org",
    "LEARNSTREAM_PUBLIC_BASE_URL": "https://learn.example.org",
}

pytestmark = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose not installed: run `make setup-compose`"
)


def _compose(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file, so a developer's infra/compose/.env cannot fill in the blanks.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [str(DOCKER_COMPOSE), "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _settings_from(env: dict[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LEARNSTREAM_"):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings(_env_file=None)


def test_compose_config_is_valid(tmp_path: Path) -> None:
    quiet = _compose(["config", "-q"], REQUIRED, tmp_path)
    assert quiet.returncode == 0, quiet.stderr

    rendered = _compose(["config"], REQUIRED, tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    services: dict[str, Any] = yaml.safe_load(rendered.stdout)["services"]
    learnstream = {
        name: spec for name, spec in services.items() if spec["image"].startswith("learnstream:")
    }
    # ingest, api, the migration job and one service per registered processor
    commands = sorted(tuple(spec["command"]) for spec in learnstream.values())
    assert commands == sorted(
        [("init",), ("ingest",), ("api",)] + [("processors", name) for name in PROCESSORS]
    )
    for name, spec in learnstream.items():
        env = {k: str(v) for k, v in spec["environment"].items()}
        settings = _settings_from(env)  # types, ranges and the production validators
        assert settings.environment == "production", name
        assert settings.jwt_secret is not None
        assert settings.jwt_secret.get_secret_value() == REQUIRED["LEARNSTREAM_JWT_SECRET"]
        assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert settings.topic_replication_factor == 3
        assert settings.mfa_encryption_keys is not None
        assert (
            settings.mfa_encryption_keys.get_secret_value()
            == REQUIRED["LEARNSTREAM_MFA_ENCRYPTION_KEYS"]
        )
        # Every service logs in as the service role; only the migrate job as the owner.
        service_url = str(settings.database_service_url)
        assert service_url.startswith("postgresql://learnstream_service:"), name
        assert REQUIRED["POSTGRES_SERVICE_PASSWORD"] in service_url, name
        owner = REQUIRED["POSTGRES_PASSWORD"] in settings.database_url
        assert owner == (name == "migrate"), f"{name}: owner URL {'given' if owner else 'missing'}"
        # The brokers speak PLAINTEXT on the compose network, acknowledged as such.
        assert settings.kafka_plaintext_acknowledged is True
    # /metrics: on the metrics ports, reachable from Prometheus on the compose network.
    for name, port in (("ingest", 9180), ("api", 9181)):
        settings = _settings_from({k: str(v) for k, v in learnstream[name]["environment"].items()})
        assert settings.metrics_host == "0.0.0.0", name
        assert getattr(settings, f"{name}_metrics_port") == port
        assert str(port) in [str(p) for p in learnstream[name]["expose"]], name
    # The brokers: three KRaft nodes voting in one quorum, RF 3 and min ISR 2.
    brokers = {n: s for n, s in services.items() if n.startswith("kafka-")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert {s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()} == {"1", "2", "3"}
    for spec in brokers.values():
        assert spec["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert spec["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert spec["environment"]["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert {"postgres", "redis", "prometheus", "grafana"} <= set(services)


def test_compose_refuses_to_render_without_its_secrets(tmp_path: Path) -> None:
    # One case run here (each costs a docker-compose start); that every secret is a
    # required ${VARIABLE:?...} is checked statically in tests/unit/infra.
    env = {k: v for k, v in REQUIRED.items() if k != "LEARNSTREAM_JWT_SECRET"}
    result = _compose(["config", "-q"], env, tmp_path)
    assert result.returncode != 0
    assert "LEARNSTREAM_JWT_SECRET" in result.stderr

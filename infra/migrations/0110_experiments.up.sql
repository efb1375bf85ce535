-- Experiments (api/routes/experiments.py, scheduler/experiments.py) and recommendation
-- analytics (processors/recommendation_analytics.py). The services' role gets its rows
-- through learnstream.db.grant_service_role, which runs after every upgrade and covers
-- every table of the schema (default privileges); nothing to grant by hand here.

-- An experiment of a tenant: what it varies, its arms, its target metric and its state.
-- Variants and weights are fixed once it starts (assignment is a hash of the learner
-- placed on the weights, so changing them would move learners between arms).
CREATE TABLE experiments (
    tenant_id       text NOT NULL,
    experiment_id   uuid NOT NULL,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    target          text NOT NULL CHECK (target IN ('recommendation_strategy')),
    -- [{"name": ..., "weight": > 0, "strategy": ...}], the control first
    variants        jsonb NOT NULL CHECK (jsonb_typeof(variants) = 'array'),
    target_metric   text NOT NULL
                    CHECK (target_metric IN ('click', 'complete', 'helpful', 'mastery_gain')),
    minimum_sample  integer NOT NULL CHECK (minimum_sample >= 0),  -- learners per arm
    alpha           double precision NOT NULL CHECK (alpha > 0 AND alpha < 1),
    tau             double precision NOT NULL CHECK (tau > 0 AND tau <= 1),  -- mSPRT mixing SD
    status          text NOT NULL DEFAULT 'draft'
                    CHECK (status IN ('draft', 'running', 'stopped')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    stopped_at      timestamptz,
    PRIMARY KEY (tenant_id, experiment_id)
);
-- At most one running experiment per tenant and target: a learner's session strategy
-- must come from one assignment, or the arms would overlap.
CREATE UNIQUE INDEX experiments_one_running
    ON experiments (tenant_id, target) WHERE status = 'running';

-- A learner's first exposure to an experiment (from ExperimentExposure events).
CREATE TABLE experiment_exposures (
    tenant_id         text NOT NULL,
    experiment_id     uuid NOT NULL,
    user_id           text NOT NULL,
    variant           text NOT NULL,
    strategy          text NOT NULL,
    first_exposed_at  timestamptz NOT NULL,   -- event time of the earliest exposure
    PRIMARY KEY (tenant_id, experiment_id, user_id)
);
CREATE INDEX experiment_exposures_variant
    ON experiment_exposures (tenant_id, experiment_id, variant);

-- The latest look at each running experiment, per arm: what the analytics processor
-- counted after its last batch, and the always-valid p-value (running minimum over looks).
CREATE TABLE experiment_results (
    tenant_id      text NOT NULL,
    experiment_id  uuid NOT NULL,
    variant        text NOT NULL,
    exposed        integer NOT NULL CHECK (exposed >= 0),
    converted      integer NOT NULL CHECK (converted >= 0 AND converted <= exposed),
    p_value        double precision NOT NULL CHECK (p_value > 0 AND p_value <= 1),
    looks          integer NOT NULL CHECK (looks >= 1),
    looked_at      timestamptz NOT NULL,       -- event time of the batch's latest event
    PRIMARY KEY (tenant_id, experiment_id, variant)
);

-- One row per learner and recommended item: the first time it was recommended (and
-- under which session strategy), then what the learner did with it within the
-- attribution window (processors/recommendation_analytics.py).
CREATE TABLE recommendation_impressions (
    tenant_id             text NOT NULL,
    user_id               text NOT NULL,
    item_id               text NOT NULL,
    kind                  text NOT NULL,
    skill_ids             text[] NOT NULL,
    strategy              text NOT NULL,         -- session strategy it was ranked under
    first_recommended_at  timestamptz NOT NULL,  -- event time of the first RecommendationsUpdated
    cause_event_id        uuid NOT NULL,
    clicked_at            timestamptz,           -- opened or answered
    completed_at          timestamptz,           -- finished, answered, or said "done"
    helpful_at            timestamptz,
    not_helpful_at        timestamptz,
    skipped_at            timestamptz,
    -- Sum over the learner's mastery updates after the recommendation of the mean
    -- change of p_mastery over the item's skills (the item's skills' mastery gain).
    mastery_gain          double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, user_id, item_id)
);
CREATE INDEX recommendation_impressions_strategy
    ON recommendation_impressions (tenant_id, strategy);

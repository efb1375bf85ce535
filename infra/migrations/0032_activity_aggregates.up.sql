-- Real-time activity aggregates (processors/aggregates.py): windowed counts by event time.

-- One row per (tenant, granularity, window start, skill); skill_id '' is the tenant's
-- total over all skills (an attempt on two skills counts once there).
CREATE TABLE activity_aggregates (
    tenant_id        text NOT NULL,
    granularity      text NOT NULL CHECK (granularity IN ('minute', 'hour')),
    window_start     timestamptz NOT NULL,
    skill_id         text NOT NULL,
    attempts         bigint NOT NULL CHECK (attempts >= 0),
    correct          bigint NOT NULL CHECK (correct >= 0),
    score_sum        double precision NOT NULL CHECK (score_sum >= 0),  -- partial credit
    active_learners  bigint NOT NULL CHECK (active_learners >= 0),
    accuracy         double precision GENERATED ALWAYS AS
                     (CASE WHEN attempts > 0 THEN correct::double precision / attempts END) STORED,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, granularity, window_start, skill_id)
);
CREATE INDEX activity_aggregates_recent ON activity_aggregates (granularity, window_start);

-- Which learners were already counted in a window: an insert that conflicts is a
-- learner seen before, so active_learners grows only on a first sighting. Exact
-- and idempotent; prune windows past their allowed lateness (see processors/aggregates.py).
CREATE TABLE activity_window_learners (
    tenant_id     text NOT NULL,
    granularity   text NOT NULL,
    window_start  timestamptz NOT NULL,
    skill_id      text NOT NULL,
    user_id       text NOT NULL,
    PRIMARY KEY (tenant_id, granularity, window_start, skill_id, user_id)
);
-- Pruning deletes by window start.
CREATE INDEX activity_window_learners_start ON activity_window_learners (window_start);

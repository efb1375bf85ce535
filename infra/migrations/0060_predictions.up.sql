-- Knowledge-tracing predictions served in the stream (processors/predictions.py).

-- The champion's P(correct) in [0, 1] on every skill it knows, after the learner's
-- latest attempt (BKT's, on the skills the learner answered, while it is the fallback).
CREATE TABLE skill_predictions (
    tenant_id      text NOT NULL,
    user_id        text NOT NULL,
    skill_id       text NOT NULL,
    p_correct      double precision NOT NULL CHECK (p_correct >= 0 AND p_correct <= 1),
    model_version  text NOT NULL,            -- "dkt@3", or "bkt" for the fallback
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, skill_id)
);

-- Each served model's per-learner state, written in the batch's transaction: the
-- processor's in-memory state is a cache checked against answers_seen, rebuilt from
-- here after a restart, a rebalance or a rolled-back batch.
CREATE TABLE prediction_learner_state (
    tenant_id      text NOT NULL,
    user_id        text NOT NULL,
    role           text NOT NULL CHECK (role IN ('champion', 'challenger')),
    model_version  text NOT NULL,
    answers_seen   bigint NOT NULL CHECK (answers_seen >= 0),  -- attempts applied, ever
    history        jsonb NOT NULL,  -- [[skill ids], correct] of the last attempts, oldest first
    recurrent      bytea,           -- the model's recurrent state (.npy bytes), NULL for others
    p_next         jsonb NOT NULL,  -- skill id -> P(correct) on the next attempt
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, role)
);

-- Running scores of each served model against the outcomes that followed its
-- predictions, per subgroup: n, log-loss sum, and P(correct) histograms of the
-- correct and wrong outcomes (equal-width bins over [0, 1]) from which AUC follows.
CREATE TABLE model_shadow_scores (
    model_version  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('champion', 'challenger')),
    subgroup_kind  text NOT NULL,  -- all, tenant, item_type, history
    subgroup       text NOT NULL,
    n              bigint NOT NULL CHECK (n >= 0),
    log_loss_sum   double precision NOT NULL CHECK (log_loss_sum >= 0),
    positive_bins  bigint[] NOT NULL,
    negative_bins  bigint[] NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, role, subgroup_kind, subgroup)
);

-- The API's read side (api/services/dashboards.py, placement.py, operator.py): which
-- learner id an account's data is filed under, placement results, feedback on
-- recommendations, and operators' decisions on fraud alerts.

-- Events carry the client app's own learner id (envelope.user_id); accounts have uuids.
-- An account's data is read under learner_id when an admin set one (the id the tenant's
-- app uses for this person), else under the account id as text.
ALTER TABLE users ADD COLUMN learner_id text
    CHECK (learner_id <> '' AND length(learner_id) <= 200);
-- One account per learner id in a tenant; an explicit learner id may not equal another
-- account's (defaulted) id either.
CREATE UNIQUE INDEX users_tenant_learner_id ON users (tenant_id, (coalesce(learner_id, id::text)));

-- One row per finished placement test. The seeds it wrote (learner_ability, skill_mastery)
-- carry placement_id as last_event_id; event_published_at stays NULL until the
-- PlacementEvent was acknowledged by the broker (retried when the result is read).
CREATE TABLE placement_results (
    tenant_id           text NOT NULL,
    placement_id        uuid NOT NULL,
    user_id             uuid NOT NULL,            -- the account that took the test
    learner_id          text NOT NULL,            -- the id its views are filed under
    ability             double precision NOT NULL,  -- EAP, logits
    ability_se          double precision NOT NULL CHECK (ability_se >= 0),
    items_administered  integer NOT NULL CHECK (items_administered >= 0),
    correct             integer NOT NULL CHECK (correct >= 0),
    stop_reason         text NOT NULL,
    skill_estimates     jsonb NOT NULL,           -- {"skill_id": p in [0, 1]}
    answers             jsonb NOT NULL,           -- [{"item_id", "skill_id", "correct"}]
    seeded_skills       text[] NOT NULL,          -- skills that had no mastery row before
    started_at          timestamptz NOT NULL,
    completed_at        timestamptz NOT NULL,
    event_published_at  timestamptz,
    PRIMARY KEY (tenant_id, placement_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX placement_results_user ON placement_results (tenant_id, user_id, completed_at DESC);

-- What learners said about recommended items (done, skipped, helpful, not helpful).
CREATE TABLE recommendation_feedback (
    tenant_id           text NOT NULL,
    feedback_id         uuid NOT NULL,
    user_id             uuid NOT NULL,
    learner_id          text NOT NULL,
    item_id             text NOT NULL,
    verdict             text NOT NULL
                        CHECK (verdict IN ('done', 'skipped', 'helpful', 'not_helpful')),
    comment             text NOT NULL DEFAULT '',
    given_at            timestamptz NOT NULL,
    event_published_at  timestamptz,              -- UserActivityEvent acknowledged
    PRIMARY KEY (tenant_id, feedback_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX recommendation_feedback_learner
    ON recommendation_feedback (tenant_id, user_id, given_at DESC);
CREATE INDEX recommendation_feedback_item ON recommendation_feedback (tenant_id, item_id, verdict);

-- An operator's decision on a fraud alert (a flagged row of fraud_signals). The
-- processor's view is left as it is; the latest decision per alert is kept here and
-- every decision is in the audit log.
CREATE TABLE fraud_reviews (
    tenant_id     text NOT NULL,
    subject_kind  text NOT NULL CHECK (subject_kind IN ('attempt', 'session')),
    subject_id    text NOT NULL,
    user_id       text NOT NULL,                  -- the learner the alert is about
    decision      text NOT NULL CHECK (decision IN ('confirmed', 'dismissed')),
    note          text NOT NULL DEFAULT '',
    reviewed_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    reviewed_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, subject_kind, subject_id)
);

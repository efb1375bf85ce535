-- Fraud and cheating signals (processors/fraud.py, scheduler/fraud.py).

-- The view: one row per attempt or session with a score above 0 (no row means 0).
-- Per-signal weights are kept so a later signal (a collusion partner, another account
-- on the device) can re-score the subject without recomputing the others.
CREATE TABLE fraud_signals (
    tenant_id         text NOT NULL,
    subject_kind      text NOT NULL CHECK (subject_kind IN ('attempt', 'session')),
    subject_id        text NOT NULL,     -- the attempt's event_id, or the session_id
    user_id           text NOT NULL,
    session_id        text NOT NULL DEFAULT '',
    item_id           text NOT NULL DEFAULT '',
    device_id         text NOT NULL DEFAULT '',
    occurred_at       timestamptz NOT NULL,
    score             double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    w_rapid_response  double precision NOT NULL DEFAULT 0,
    w_person_misfit   double precision NOT NULL DEFAULT 0,
    w_collusion       double precision NOT NULL DEFAULT 0,
    w_velocity        double precision NOT NULL DEFAULT 0,
    w_shared_device   double precision NOT NULL DEFAULT 0,
    -- [{"signal": "rapid_response", "weight": 0.8, "detail": "..."}, ...]
    reasons           jsonb NOT NULL,
    -- Score at or above the alert threshold: later analysis excludes these.
    flagged           boolean NOT NULL,
    last_cause_id     text NOT NULL,     -- the event that last changed the row
    updated_at        timestamptz NOT NULL DEFAULT now(),
    version           bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, subject_kind, subject_id)
);
CREATE INDEX fraud_signals_user ON fraud_signals (tenant_id, user_id, occurred_at);
CREATE INDEX fraud_signals_flagged ON fraud_signals (tenant_id, occurred_at) WHERE flagged;
CREATE INDEX fraud_signals_device ON fraud_signals (tenant_id, device_id, occurred_at)
    WHERE subject_kind = 'session';

-- What analyses join to leave suspicious answers out: flagged attempts, and every
-- attempt of a flagged session (attempts of a session have no row of their own
-- unless they scored, so sessions are listed by id).
CREATE VIEW flagged_attempts AS
SELECT tenant_id, subject_id AS event_id, user_id, session_id, score, occurred_at
FROM fraud_signals WHERE subject_kind = 'attempt' AND flagged;
CREATE VIEW flagged_sessions AS
SELECT tenant_id, subject_id AS session_id, user_id, device_id, score, occurred_at
FROM fraud_signals WHERE subject_kind = 'session' AND flagged;

-- Rolling reference per item and per skill: response-time histogram (log bins,
-- halved at a cap) and correct rate. scope_id is the item_id or skill_id.
CREATE TABLE fraud_reference_stats (
    tenant_id  text NOT NULL,
    scope      text NOT NULL CHECK (scope IN ('item', 'skill')),
    scope_id   text NOT NULL,
    rt_counts  double precision[] NOT NULL,
    answers    integer NOT NULL CHECK (answers >= 0),
    correct    integer NOT NULL CHECK (correct >= 0),
    PRIMARY KEY (tenant_id, scope, scope_id)
);

-- How often each wrong answer was given to an item (for "uncommon").
CREATE TABLE fraud_wrong_answer_counts (
    tenant_id  text NOT NULL,
    item_id    text NOT NULL,
    response   text NOT NULL,      -- normalized (scheduler.fraud.normalize_response)
    answers    integer NOT NULL CHECK (answers >= 0),
    PRIMARY KEY (tenant_id, item_id, response)
);

-- Recent wrong answers per group (class or shared session), for the collusion window.
CREATE TABLE fraud_group_wrong_answers (
    tenant_id    text NOT NULL,
    group_key    text NOT NULL,    -- "class:<uuid>" or "session:<id>"
    item_id      text NOT NULL,
    response     text NOT NULL,
    user_id      text NOT NULL,
    session_id   text NOT NULL,
    event_id     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, group_key, item_id, response, event_id)
);
CREATE INDEX fraud_group_wrong_answers_time ON fraud_group_wrong_answers (occurred_at);

-- Collusion partners per attempt: (attempt, other learner). Insert-only, so the
-- partner count of an attempt does not depend on which side was processed first.
CREATE TABLE fraud_collusion_partners (
    tenant_id        text NOT NULL,
    event_id         text NOT NULL,
    partner_user_id  text NOT NULL,
    PRIMARY KEY (tenant_id, event_id, partner_user_id)
);

-- Per learner: the last answers (oldest first) for person fit and velocity.
CREATE TABLE fraud_learner_history (
    tenant_id     text NOT NULL,
    user_id       text NOT NULL,
    event_ids     text[] NOT NULL,
    occurred_at   timestamptz[] NOT NULL,
    scores        double precision[] NOT NULL,
    a             double precision[] NOT NULL,   -- item parameters used (or proxies)
    b             double precision[] NOT NULL,
    c             double precision[] NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- Sessions seen on a device (from SessionEvent.device_id): accounts on a device are
-- the distinct users of its sessions; first and last event time of each session.
CREATE TABLE fraud_device_sessions (
    tenant_id      text NOT NULL,
    device_id      text NOT NULL,
    session_id     text NOT NULL,
    user_id        text NOT NULL,
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, device_id, session_id, user_id)
);

-- Recommendations (processors/recommendations.py): the ranked list per learner, the
-- learner state the processor keeps from the mastery stream, and the bandit beliefs.

-- The learner's current ranked recommendations, replaced whole on every update.
CREATE TABLE recommendations (
    tenant_id       text NOT NULL,
    user_id         text NOT NULL,
    rank            integer NOT NULL CHECK (rank >= 1),       -- 1 = best
    item_id         text NOT NULL,                             -- a published_content item
    kind            text NOT NULL,                             -- question, lesson, ...
    skill_ids       text[] NOT NULL,
    score           double precision NOT NULL,
    reason          text NOT NULL
                    CHECK (reason IN ('due_review', 'gap', 'difficulty_match',
                                      'learning_path', 'variety')),
    reason_detail   text NOT NULL,
    strategy        text NOT NULL CHECK (strategy IN ('practice', 'review', 'mock_test')),
    bucket          text NOT NULL,                             -- bandit context bucket
    cause_event_id  uuid NOT NULL,                             -- the MasteryUpdated behind it
    computed_at     timestamptz NOT NULL,                      -- event time of the cause
    PRIMARY KEY (tenant_id, user_id, rank)
);

-- Per learner: own copy of mastery from MasteryUpdated (so the ranking depends only on
-- this processor's input), and the current session with its strategy and the mastery
-- each practised skill had when the session first touched it (for the reward).
CREATE TABLE recommendation_learners (
    tenant_id         text NOT NULL,
    user_id           text NOT NULL,
    mastery           jsonb NOT NULL,     -- {skill: [p_mastery, attempts, last_evidence_at]}
    session_id        text NOT NULL,
    session_started   timestamptz NOT NULL,
    last_event_at     timestamptz NOT NULL,
    strategy          text NOT NULL,
    bucket            text NOT NULL,
    session_start     jsonb NOT NULL,     -- {skill: p_mastery before the session's first answer}
    session_end       jsonb NOT NULL,     -- {skill: p_mastery after its last answer}
    last_event_id     uuid NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- Thompson-sampling beliefs per tenant and context bucket (scheduler.bandit.BanditState
-- of one bucket: {strategy: [alpha, beta]}).
CREATE TABLE recommendation_bandit (
    tenant_id   text NOT NULL,
    bucket      text NOT NULL,
    beliefs     jsonb NOT NULL,
    sessions    integer NOT NULL DEFAULT 0 CHECK (sessions >= 0),  -- rewards recorded
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, bucket)
);

-- Code submissions (processors/code_submissions.py): what the static analysis of each
-- submission found, and the AttemptEvent it became (if it carried a mastery signal).
CREATE TABLE code_submissions (
    tenant_id         text NOT NULL,
    event_id          uuid NOT NULL,
    user_id           text NOT NULL,
    item_id           text NOT NULL,
    language          text NOT NULL,
    -- analyzed: Python parsed, metrics and construct skills found;
    -- tests_only: another language, the test result is the only signal;
    -- unparsable: Python that could not be analysed (reason says why), no mastery change;
    -- no_tests: tests_total = 0, nothing to learn from.
    status            text NOT NULL
                      CHECK (status IN ('analyzed', 'tests_only', 'unparsable', 'no_tests')),
    reason            text,
    tests_passed      integer NOT NULL CHECK (tests_passed >= 0),
    tests_total       integer NOT NULL CHECK (tests_total >= tests_passed),
    score             double precision CHECK (score BETWEEN 0 AND 1),  -- passed / total
    runtime_ms        bigint,
    metrics           jsonb,                     -- static metrics of Python source
    construct_skills  text[] NOT NULL DEFAULT '{}',
    attempt_event_id  uuid,                      -- the derived AttemptEvent, if any
    source_sha256     bytea NOT NULL,
    source_chars      integer NOT NULL,
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX code_submissions_learner ON code_submissions (tenant_id, user_id, occurred_at);

-- Learner profiles with learning preferences, onboarding progress, and the
-- tombstones that tell processors and the lake which learners were erased.

CREATE TABLE learner_profiles (
    tenant_id              text NOT NULL,
    user_id                uuid NOT NULL,
    goals                  text[] NOT NULL DEFAULT '{}',
    daily_minutes          integer NOT NULL DEFAULT 20 CHECK (daily_minutes BETWEEN 1 AND 600),
    preferred_kinds        text[] NOT NULL DEFAULT '{}',
    notification_channels  text[] NOT NULL DEFAULT '{in_app}',
    quiet_hours_start      time,            -- local time in "timezone"; both or neither
    quiet_hours_end        time,
    timezone               text NOT NULL DEFAULT 'UTC',   -- IANA name
    locale                 text NOT NULL DEFAULT 'en',
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL))
);

CREATE TABLE onboarding_progress (
    tenant_id     text NOT NULL,
    user_id       uuid NOT NULL,
    step          text NOT NULL
                  CHECK (step IN ('profile', 'preferences', 'placement', 'first_session')),
    completed_at  timestamptz NOT NULL,
    skipped       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, user_id, step),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- One row per erased learner: processors drop their events, lake compaction drops
-- their rows. Holds no personal data beyond the (pseudonymous) ids.
CREATE TABLE privacy_tombstones (
    tenant_id     text NOT NULL,
    subject_id    text NOT NULL,            -- the learner id as events carry it
    erased_at     timestamptz NOT NULL,
    requested_by  text NOT NULL,            -- user id or API key id
    PRIMARY KEY (tenant_id, subject_id)
);

-- Notifications (processors/notifications.py): the learner's inbox, the per-learner
-- state the rules need, and the outbox of deliveries to channels other than in-app.

-- The inbox the API serves. notification_id is derived from the cause, so a replay
-- writes the same row (ON CONFLICT DO NOTHING) and read_at set by the API survives.
CREATE TABLE notifications (
    notification_id  uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    user_id          text NOT NULL,
    kind             text NOT NULL
                     CHECK (kind IN ('review_due', 'milestone', 'streak', 'strategy_suggestion')),
    title            text NOT NULL,
    body             text NOT NULL,
    item_ids         text[] NOT NULL DEFAULT '{}',
    channels         text[] NOT NULL,                 -- after the learner's preferences
    cause_event_id   uuid NOT NULL,
    created_at       timestamptz NOT NULL,            -- event time of the cause (UTC)
    deliver_after    timestamptz NOT NULL,            -- end of quiet hours, or created_at
    read_at          timestamptz                      -- set by the API
);
CREATE INDEX notifications_inbox ON notifications (tenant_id, user_id, created_at DESC);

-- What the rules remember per learner.
CREATE TABLE notification_learners (
    tenant_id             text NOT NULL,
    user_id               text NOT NULL,
    mastered_skills       text[] NOT NULL DEFAULT '{}',
    streak_days           integer NOT NULL DEFAULT 0 CHECK (streak_days >= 0),
    last_active_day       date,
    last_digest_period    bigint,                      -- scheduler.notify.period_index
    stalled_sessions      integer NOT NULL DEFAULT 0 CHECK (stalled_sessions >= 0),
    session_id            text NOT NULL DEFAULT '',
    last_event_at         timestamptz,
    session_start         jsonb NOT NULL DEFAULT '{}', -- {skill: p_mastery before}
    session_end           jsonb NOT NULL DEFAULT '{}', -- {skill: p_mastery after}
    last_event_id         uuid NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- Outbox: one row per notification and external channel (webhook), written in the
-- same transaction as the inbox row; delivered after the commit, retried until done.
CREATE TABLE notification_deliveries (
    notification_id  uuid NOT NULL REFERENCES notifications (notification_id) ON DELETE CASCADE,
    channel          text NOT NULL,
    deliver_after    timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    delivered_at     timestamptz,
    last_error       text,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX notification_deliveries_pending ON notification_deliveries (deliver_after)
    WHERE delivered_at IS NULL;

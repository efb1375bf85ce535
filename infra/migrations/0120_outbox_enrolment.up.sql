-- Account mail leaves through an outbox (api/services/outbox.py): the request writes the
-- mail in the same transaction as the account change it reports, and a sender in the
-- API process delivers it with retries and backoff, marking it sent or failed. The body
-- (it carries single-use tokens) is cleared once the mail is sent or given up.
-- tenant_id + user_id follow the learner-table convention, so erasure
-- (api/services/privacy.py) deletes a learner's mail with the rest of their rows.
-- The service role gets SELECT/INSERT/UPDATE/DELETE on it and USAGE on its sequence
-- through the owner's default privileges (learnstream.db.grant_service_role).
CREATE TABLE mail_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text,
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    recipient        text NOT NULL,
    subject          text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX mail_outbox_user ON mail_outbox (tenant_id, user_id);

-- One-time enrolment links for accounts made by an operator (learnstream user create):
-- the first sign-in sets the password (api/services/enrolment.py).
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password', 'unlock', 'enrol'));

-- Append-only log of security events (failed logins, lockouts, denied access, MFA
-- changes, key creation, privacy exports/deletions). Rows are never changed or
-- removed: a trigger refuses UPDATE and DELETE for every role, owner included.
-- (TRUNCATE stays possible for the table owner; run the API as a role without it.)
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    tenant_id    text,                    -- NULL when the tenant is unknown (bad API key)
    actor_kind   text CHECK (actor_kind IN ('user', 'client_app', 'anonymous', 'system')),
    actor_id     text,                    -- user id or key_id; never an email or a secret
    action       text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    target_id    text,
    ip           text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_tenant_time ON audit_log (tenant_id, occurred_at DESC);
CREATE INDEX audit_log_action_time ON audit_log (action, occurred_at DESC);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

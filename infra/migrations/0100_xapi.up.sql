-- xAPI statements in (ingest/routes/xapi.py, docs/integrations.md).

-- Which item and skills a tenant's xAPI activity ids stand for; set through the CMS
-- (PUT /v1/xapi/activities). A statement about an activity listed here that describes
-- an answer becomes an AttemptEvent.
CREATE TABLE xapi_activities (
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    activity_id   text NOT NULL CHECK (length(activity_id) BETWEEN 1 AND 2048),  -- an IRI
    item_id       text NOT NULL,
    item_version  integer NOT NULL DEFAULT 0 CHECK (item_version >= 0),  -- 0: unknown
    skill_ids     text[] NOT NULL CHECK (cardinality(skill_ids) >= 1),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, activity_id)
);

-- What happens to a statement that maps to no attempt: 'store' keeps it in
-- xapi_statements, 'refuse' answers 400 for the batch. No row means 'store'.
CREATE TABLE xapi_settings (
    tenant_id  text PRIMARY KEY REFERENCES tenants (tenant_id),
    unmapped   text NOT NULL DEFAULT 'store' CHECK (unmapped IN ('store', 'refuse')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every statement the LRS endpoint took, by its id: the content hash tells a resend
-- (no-op) from a different statement reusing an id (409). user_id is the learner id
-- (actor.account.name), so privacy export and erasure find the rows.
CREATE TABLE xapi_statements (
    tenant_id       text NOT NULL,
    statement_id    uuid NOT NULL,
    user_id         text NOT NULL,
    verb_id         text NOT NULL,
    activity_id     text NOT NULL,
    content_sha256  bytea NOT NULL,
    statement       jsonb NOT NULL,
    attempt         boolean NOT NULL,  -- true: published as an AttemptEvent
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, statement_id)
);
CREATE INDEX xapi_statements_learner ON xapi_statements (tenant_id, user_id);

-- LTI 1.3 Advantage, Learnstream as the tool (api/services/lti/, docs/integrations.md).

-- A platform (LMS) registered by a tenant's admin: where its keys and endpoints are.
CREATE TABLE lti_platforms (
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    platform_id     text NOT NULL CHECK (platform_id ~ '^[a-z0-9-]{1,40}$'),
    issuer          text NOT NULL,
    client_id       text NOT NULL,            -- the tool's client id at the platform
    auth_login_url  text NOT NULL,            -- the platform's OIDC authorization endpoint
    auth_token_url  text NOT NULL,            -- OAuth 2 token endpoint (AGS, NRPS)
    jwks_url        text NOT NULL,
    deployment_ids  text[] NOT NULL CHECK (cardinality(deployment_ids) >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform_id),
    UNIQUE (issuer, client_id)
);

-- The tool's signing keys: the newest signs, every key not retired for a day is in
-- the JWKS (so a platform caching the old set still verifies during a rotation).
CREATE TABLE lti_tool_keys (
    kid          text PRIMARY KEY,
    private_jwk  text NOT NULL,              -- sealed like TOTP secrets (api/services/mfa.py)
    public_jwk   jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

-- An LMS course (LTI context) and the Learnstream class made for it at first launch.
CREATE TABLE lti_contexts (
    tenant_id    text NOT NULL,
    platform_id  text NOT NULL,
    context_id   text NOT NULL,
    class_id     uuid NOT NULL,
    title        text NOT NULL DEFAULT '',
    lineitems_url text,                      -- AGS endpoint of the course, from the launch
    memberships_url text,                    -- NRPS endpoint, from the launch
    PRIMARY KEY (tenant_id, platform_id, context_id),
    FOREIGN KEY (tenant_id, platform_id) REFERENCES lti_platforms (tenant_id, platform_id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, class_id) REFERENCES classes (tenant_id, class_id) ON DELETE CASCADE
);

-- AGS line items created by Learnstream, one per (course, skill): created once, reused.
CREATE TABLE lti_line_items (
    tenant_id    text NOT NULL,
    platform_id  text NOT NULL,
    context_id   text NOT NULL,
    skill_id     text NOT NULL,
    lineitem_url text NOT NULL,
    PRIMARY KEY (tenant_id, platform_id, context_id, skill_id),
    FOREIGN KEY (tenant_id, platform_id, context_id)
        REFERENCES lti_contexts (tenant_id, platform_id, context_id) ON DELETE CASCADE
);

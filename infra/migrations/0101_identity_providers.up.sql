-- Single sign-on with OpenID Connect per tenant (api/services/oidc.py, docs/integrations.md).
-- Identities signed in this way are rows of user_identities (provider = the issuer URL).
CREATE TABLE identity_providers (
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    provider_id    text NOT NULL CHECK (provider_id ~ '^[a-z0-9-]{1,40}$'),
    display_name   text NOT NULL,             -- the button: "Sign in with <display_name>"
    issuer         text NOT NULL,             -- discovery at <issuer>/.well-known/openid-configuration
    client_id      text NOT NULL,
    client_secret  text NOT NULL,             -- sealed like TOTP secrets (api/services/mfa.py)
    link_by_email  boolean NOT NULL DEFAULT false,  -- link to an account by verified e-mail
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider_id)
);

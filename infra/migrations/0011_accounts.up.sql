-- Tenants, user accounts, roles, linked identities, MFA, refresh tokens and the
-- single-use tokens sent by email (verification, password reset, unlock).

CREATE TABLE tenants (
    tenant_id                text PRIMARY KEY,
    name                     text NOT NULL,
    allow_self_registration  boolean NOT NULL DEFAULT true,
    -- Days personal data of inactive learners is kept; NULL keeps it until deletion.
    retention_days           integer CHECK (retention_days > 0),
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants (tenant_id),
    email              text NOT NULL,
    display_name       text NOT NULL DEFAULT '',
    -- argon2id PHC string; NULL for accounts that only sign in through a linked identity.
    password_hash      text,
    email_verified_at  timestamptz,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    failed_logins      integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until       timestamptz,
    -- TOTP: a secret being enrolled stays pending until the first code confirms it.
    mfa_secret         text,
    mfa_pending_secret text,
    mfa_enabled_at     timestamptz,
    mfa_last_step      bigint,                  -- last accepted TOTP time step (no replay)
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Lets other tables reference (tenant_id, user id), so a row can never pair a
    -- user with a tenant that is not theirs.
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, lower(email));

CREATE TABLE user_roles (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL
                CHECK (role IN ('learner', 'teacher', 'author', 'reviewer', 'admin', 'operator')),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    granted_by  uuid,
    PRIMARY KEY (user_id, role)
);

-- Sign-in identities at outside providers (OAuth/OIDC), linked to one user.
CREATE TABLE user_identities (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider   text NOT NULL,           -- e.g. "google", or an OIDC issuer URL
    subject    text NOT NULL,           -- the provider's stable user id ("sub")
    email      text,
    linked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- One-time MFA backup codes; only a SHA-256 is kept.
CREATE TABLE mfa_backup_codes (
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_sha256  bytea NOT NULL,
    used_at      timestamptz,
    PRIMARY KEY (user_id, code_sha256)
);

-- Refresh tokens rotate on every use; all tokens descended from one login share a
-- family_id, and presenting an already-rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    id            uuid PRIMARY KEY,
    family_id     uuid NOT NULL,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256  bytea NOT NULL UNIQUE,
    mfa_verified  boolean NOT NULL DEFAULT false,
    issued_at     timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    rotated_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Single-use tokens mailed to the user; only a SHA-256 is kept.
CREATE TABLE account_tokens (
    token_sha256  bytea PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'unlock')),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);

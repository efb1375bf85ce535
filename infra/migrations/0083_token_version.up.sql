-- Per-user token version (api/services/token_versions.py): every access token carries
-- the version it was issued under; password reset, role demotion, sign-out, refresh-
-- family revocation, MFA enrolment and erasure raise it, ending earlier access tokens.
ALTER TABLE users ADD COLUMN token_version bigint NOT NULL DEFAULT 0
    CHECK (token_version >= 0);

-- TOTP secrets are stored encrypted from now on ("enc1:<key id>:<nonce+ciphertext>",
-- api/services/mfa.py). SQL cannot encrypt (the key is not in the database), so the
-- plain secrets stored before are re-encrypted by `python -m api.mfa_rekey`, which
-- `python -m api` runs at start, and at their owner's next MFA sign-in.
COMMENT ON COLUMN users.mfa_secret IS
    'TOTP secret, AES-256-GCM encrypted: enc1:<key id>:<base64url(nonce || ciphertext)>';
COMMENT ON COLUMN users.mfa_pending_secret IS
    'TOTP secret being enrolled, encrypted like mfa_secret';

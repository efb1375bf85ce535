-- TOTP secrets stay encrypted: code from before 0083 reads them as plain text. Before
-- downgrading, run `python -m api.mfa_rekey --decrypt` with the same keys.
COMMENT ON COLUMN users.mfa_pending_secret IS NULL;
COMMENT ON COLUMN users.mfa_secret IS NULL;
ALTER TABLE users DROP COLUMN token_version;

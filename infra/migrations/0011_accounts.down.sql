DROP TABLE account_tokens;
DROP TABLE refresh_tokens;
DROP TABLE mfa_backup_codes;
DROP TABLE user_identities;
DROP TABLE user_roles;
DROP TABLE users;
DROP TABLE tenants;

DELETE FROM account_tokens WHERE purpose = 'enrol';
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'reset_password', 'unlock'));
DROP TABLE mail_outbox;

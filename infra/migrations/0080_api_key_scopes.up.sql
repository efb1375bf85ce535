-- API keys carry explicit scopes (issue 12, H2): a key may only do what its scopes
-- name, and no scope acts on accounts. Keys issued before this migration could post
-- events and read learner views, content and skills, and post learner feedback;
-- they keep exactly those powers (every scope below). New keys default to the
-- narrowest scope, events:write.
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL
        DEFAULT '{events:write,views:read,content:read,feedback:write}';
ALTER TABLE api_keys ALTER COLUMN scopes SET DEFAULT '{events:write}';
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_known CHECK (
    cardinality(scopes) > 0
    AND scopes <@ ARRAY['events:write', 'views:read', 'content:read', 'feedback:write']::text[]
);

-- The services run as a role that owns no table (learnstream.db.grant_service_role,
-- run after every upgrade, creates it and grants it rows, never DDL). Two things here
-- let them do so:
--
-- 1. The learner-state processor creates next month's attempts partition at run time.
--    CREATE TABLE ... PARTITION OF needs the parent's owner, so the function now runs
--    as its owner (SECURITY DEFINER) with a fixed search_path, and only the roles
--    the grant step names may call it. Its only input is a timestamp.
ALTER FUNCTION attempts_ensure_partition(timestamptz)
    SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION attempts_ensure_partition(timestamptz) FROM PUBLIC;

-- 2. The audit log: no role but its owner holds any privilege on it through PUBLIC.
REVOKE ALL ON audit_log FROM PUBLIC;

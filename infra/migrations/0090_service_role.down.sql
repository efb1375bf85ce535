GRANT EXECUTE ON FUNCTION attempts_ensure_partition(timestamptz) TO PUBLIC;
ALTER FUNCTION attempts_ensure_partition(timestamptz) SECURITY INVOKER RESET search_path;

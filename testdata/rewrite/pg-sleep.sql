SELECT id FROM chunks WHERE pg_sleep(1) IS NULL

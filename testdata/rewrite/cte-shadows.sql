WITH chunks AS (SELECT 1 AS id) SELECT id FROM chunks

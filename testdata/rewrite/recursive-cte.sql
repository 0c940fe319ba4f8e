-- mode: trusted
WITH RECURSIVE walk(id) AS (SELECT id FROM chunks WHERE id = 1 UNION ALL SELECT c.id FROM chunks c JOIN walk w ON c.id = w.id + 1) SELECT id FROM walk

-- mode: trusted
SELECT id, round(classification / 2.0) AS half, lower(content) FROM chunks WHERE content::text LIKE $1

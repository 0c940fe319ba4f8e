SELECT id, content FROM chunks ORDER BY embedding <=> $1 LIMIT 5

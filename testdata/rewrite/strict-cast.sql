SELECT id FROM chunks WHERE content::int = 3

SELECT id FROM chunks WHERE id = $2

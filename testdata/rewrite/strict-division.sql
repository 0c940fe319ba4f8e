SELECT id FROM chunks WHERE 1 / (classification - 2) = 0

-- mode: trusted
SELECT current_setting($1), id FROM chunks

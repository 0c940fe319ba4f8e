SELECT count(*) FROM ONLY chunks

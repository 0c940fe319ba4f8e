INSERT INTO chunks (id) VALUES (1)

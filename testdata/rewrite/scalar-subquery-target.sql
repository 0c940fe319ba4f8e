SELECT (SELECT count(*) FROM chunks) AS n, label FROM labels

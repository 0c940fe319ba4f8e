WITH recent AS (SELECT id, document_id FROM chunks WHERE id > $1) SELECT r.id FROM recent r JOIN labels l ON l.doc_id = r.document_id

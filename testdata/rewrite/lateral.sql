SELECT l.label, top.id FROM labels l, LATERAL (SELECT id FROM chunks c WHERE c.document_id = l.doc_id ORDER BY c.id LIMIT 1) top

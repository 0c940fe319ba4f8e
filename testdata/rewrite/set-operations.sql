SELECT id FROM chunks UNION SELECT doc_id FROM labels EXCEPT SELECT id FROM kb.documents

SELECT id FROM chunks WHERE document_id IN (SELECT id FROM kb.documents) AND EXISTS (SELECT 1 FROM chunks c2 WHERE c2.document_id = chunks.document_id AND c2.id <> chunks.id)

SELECT c.id, d.title FROM chunks AS c JOIN kb.documents d ON d.id = c.document_id WHERE c.classification < 2

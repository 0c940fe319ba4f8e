SELECT id, contact_email FROM chunks

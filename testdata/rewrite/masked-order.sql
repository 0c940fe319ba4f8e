SELECT id, contact_email FROM chunks ORDER BY contact_email

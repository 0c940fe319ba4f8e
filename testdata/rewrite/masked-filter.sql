SELECT id FROM chunks WHERE contact_email LIKE '%@acme.test'

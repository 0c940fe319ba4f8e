SELECT * INTO stolen FROM chunks

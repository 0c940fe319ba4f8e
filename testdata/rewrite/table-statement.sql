TABLE chunks

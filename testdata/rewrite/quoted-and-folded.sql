SELECT "C".id FROM CHUNKS "C", Chunks

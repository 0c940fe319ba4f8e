-- Indexes led by the tenant column for the other columns the demo policy's
-- rules compare (visibility, classification, source): with them a selective
-- policy is answered from an index instead of testing every row of the
-- tenant, and `ragfence doctor` finds nothing missing on a first run.
CREATE INDEX chunks_tenant_visibility_idx ON chunks (tenant_id, visibility);
CREATE INDEX chunks_tenant_classification_idx ON chunks (tenant_id, classification);
CREATE INDEX chunks_tenant_source_idx ON chunks (tenant_id, source);

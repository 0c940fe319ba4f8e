SELECT set_config('role', 'postgres', false), id FROM chunks

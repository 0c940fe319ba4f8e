-- Revocations: tokens, subjects and agents refused before their tokens
-- expire. Every ragfence serve keeps the rows in force in memory and hears
-- of each change on the ragfence_revocations channel (the trigger below),
-- so a revocation is enforced on every instance without a read per request.
CREATE TABLE ragfence.revocations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           text        NOT NULL CHECK (tenant <> ''),
    -- token: one token (token_id, its jti); subject: every token of a user,
    -- agents acting for them included; agent: every token in which the
    -- agent acts, or only those acting for subject when it is set.
    kind             text        NOT NULL CHECK (kind IN ('token', 'subject', 'agent')),
    token_id         text,
    subject          text,
    agent            text,
    reason           text        NOT NULL DEFAULT '',
    created_by       text        NOT NULL CHECK (created_by <> ''),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- NULL: until lifted.
    ends_at          timestamptz,
    lifted_at        timestamptz,
    lifted_by        text,
    -- When the revoked token expires anyway: the row may be dropped after.
    token_expires_at timestamptz,
    CONSTRAINT revocations_target CHECK (CASE kind
        WHEN 'token'   THEN token_id <> '' AND subject IS NULL AND agent IS NULL
        WHEN 'subject' THEN subject <> '' AND token_id IS NULL AND agent IS NULL
        WHEN 'agent'   THEN agent <> '' AND token_id IS NULL AND (subject IS NULL OR subject <> '')
    END),
    CONSTRAINT revocations_ends_after_start CHECK (ends_at IS NULL OR ends_at > created_at)
);

CREATE INDEX revocations_in_force_idx ON ragfence.revocations (tenant, id)
    WHERE lifted_at IS NULL;

CREATE FUNCTION ragfence.notify_revocation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The payload is the row's id; listeners read the row (or its absence).
    PERFORM pg_notify('ragfence_revocations', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER revocations_notify
    AFTER INSERT OR UPDATE OR DELETE ON ragfence.revocations
    FOR EACH ROW EXECUTE FUNCTION ragfence.notify_revocation();

-- TRUNCATE fires no row trigger: tell listeners to reload everything.
CREATE FUNCTION ragfence.notify_revocation_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ragfence_revocations', 'reload');
    RETURN NULL;
END;
$$;

CREATE TRIGGER revocations_notify_truncate
    AFTER TRUNCATE ON ragfence.revocations
    FOR EACH STATEMENT EXECUTE FUNCTION ragfence.notify_revocation_all();

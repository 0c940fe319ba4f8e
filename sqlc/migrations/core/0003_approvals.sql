-- Approvals: an agent's request to read the rows of one approval rule of
-- the policy (agents.<id>.approval), its user's decision, and grants made
-- ahead of time by an operator. Every ragfence serve keeps the approvals
-- in force in memory and hears of each change on ragfence_approvals.
CREATE TABLE ragfence.approvals (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant             text        NOT NULL CHECK (tenant <> ''),
    subject            text        NOT NULL CHECK (subject <> ''),
    agent              text        NOT NULL CHECK (agent <> ''),
    resource           text        NOT NULL CHECK (resource <> ''),
    rule               text        NOT NULL CHECK (rule <> ''),
    reason             text        NOT NULL DEFAULT '',
    -- pending: asked, not decided (it expires at request_expires_at);
    -- approved: in force from valid_from to valid_until; denied.
    status             text        NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    requested_by       text        NOT NULL CHECK (requested_by <> ''),
    requested_at       timestamptz NOT NULL DEFAULT now(),
    request_expires_at timestamptz,
    -- How long an approval of the request lasts (the rule's ttl).
    ttl_seconds        double precision CHECK (ttl_seconds > 0),
    decided_at         timestamptz,
    decided_by         text,
    valid_from         timestamptz,
    valid_until        timestamptz,
    -- When a server wrote the audit record of the request's or the
    -- approval's expiry: one server, once (see Store.Expired).
    expiry_recorded_at timestamptz,
    CONSTRAINT approvals_window CHECK (status <> 'approved' OR (valid_from IS NOT NULL AND valid_until > valid_from)),
    CONSTRAINT approvals_pending CHECK (status <> 'pending' OR (request_expires_at IS NOT NULL AND ttl_seconds IS NOT NULL))
);

CREATE INDEX approvals_subject_idx ON ragfence.approvals (tenant, subject, status);
CREATE INDEX approvals_in_force_idx ON ragfence.approvals (valid_until) WHERE status = 'approved';

CREATE FUNCTION ragfence.notify_approval() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ragfence_approvals', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER approvals_notify
    AFTER INSERT OR UPDATE OR DELETE ON ragfence.approvals
    FOR EACH ROW EXECUTE FUNCTION ragfence.notify_approval();

-- TRUNCATE fires no row trigger: tell listeners to reload everything.
CREATE FUNCTION ragfence.notify_approval_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ragfence_approvals', 'reload');
    RETURN NULL;
END;
$$;

CREATE TRIGGER approvals_notify_truncate
    AFTER TRUNCATE ON ragfence.approvals
    FOR EACH STATEMENT EXECUTE FUNCTION ragfence.notify_approval_all();

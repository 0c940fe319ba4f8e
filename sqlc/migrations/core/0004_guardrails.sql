-- Guardrails: what each (tenant, subject, agent) was served in each fixed
-- window under each guardrail of the policy, summed over every ragfence
-- serve on the database. Instances count locally and sync in batches
-- (ragfence.guardrail_sync, one call per sync); between syncs each serves
-- within the share of the remaining budget the last sync granted it, so
-- the sum over instances stays within the budget (package guardrail).
CREATE TABLE ragfence.guardrail_counters (
    guardrail       text        NOT NULL,
    window_seconds  integer     NOT NULL CHECK (window_seconds > 0),
    tenant          text        NOT NULL,
    subject         text        NOT NULL,
    -- '' for a user calling directly.
    agent           text        NOT NULL,
    window_start    timestamptz NOT NULL,
    row_count       bigint      NOT NULL DEFAULT 0,
    request_count   bigint      NOT NULL DEFAULT 0,
    -- Distinct documents served (ragfence.guardrail_documents).
    document_count  bigint      NOT NULL DEFAULT 0,
    -- Budget granted to instances and not yet reported used.
    held_rows       bigint      NOT NULL DEFAULT 0,
    held_requests   bigint      NOT NULL DEFAULT 0,
    held_documents  bigint      NOT NULL DEFAULT 0,
    -- Instances that served the key in this window; grants are split among them.
    instances       integer     NOT NULL DEFAULT 0,
    -- Windows of history the guardrail's baseline reads (0: none); older
    -- windows are pruned.
    history_windows integer     NOT NULL DEFAULT 0,
    -- The first window of the key's unbroken history: carried into each
    -- new window while an older one is kept.
    first_window    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (guardrail, window_seconds, tenant, subject, agent, window_start)
);

-- The distinct documents served in a window, so instances count each
-- document once however many of them served it. document is a hash of
-- the document's id (hex of the first 16 bytes of its SHA-256).
CREATE TABLE ragfence.guardrail_documents (
    guardrail      text        NOT NULL,
    window_seconds integer     NOT NULL,
    tenant         text        NOT NULL,
    subject        text        NOT NULL,
    agent          text        NOT NULL,
    window_start   timestamptz NOT NULL,
    document       text        NOT NULL,
    PRIMARY KEY (guardrail, window_seconds, tenant, subject, agent, window_start, document)
);

-- Each syncing instance, so a new key's first requests are split among
-- the live ones before the database has granted them anything.
CREATE TABLE ragfence.guardrail_instances (
    instance  text        PRIMARY KEY,
    last_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE ragfence.guardrail_sync_result AS (
    -- The key's position in the call's arrays (1-based).
    idx             integer,
    row_count       bigint,
    request_count   bigint,
    document_count  bigint,
    -- What this call granted the instance: it may serve that much more
    -- before its next sync.
    grant_rows      bigint,
    grant_requests  bigint,
    grant_documents bigint,
    instances       integer,
    -- Rows of the key in the history_windows windows before this one.
    history_rows    bigint,
    first_window    timestamptz,
    live_instances  integer
);

-- guardrail_grant is an instance's share of what a budget has left: the
-- budget less what was used and what other instances hold, split among
-- the key's instances and rounded up, so a last unit is never stranded.
-- A limit of 0 grants nothing: the guardrail has no such budget, or the
-- instance, idle, only gives back what it holds.
CREATE FUNCTION ragfence.guardrail_grant(p_limit bigint, p_used bigint, p_held bigint, p_instances integer)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_limit <= 0 THEN 0
        ELSE (greatest(p_limit - p_used - p_held, 0) + p_instances - 1) / p_instances END
$$;

-- guardrail_sync applies one instance's batch: for each key (the arrays
-- are parallel, and sorted by key so concurrent calls lock rows in one
-- order and cannot deadlock) it adds the counts used since the last sync,
-- adds the new distinct documents, gives back release_* of what the
-- instance held, and grants it its share (split by the key's instances,
-- rounded up) of the budget neither used nor held. documents[doc_from[i]
-- .. doc_to[i]] are key i's documents.
CREATE FUNCTION ragfence.guardrail_sync(
    p_instance text, p_live_seconds double precision,
    p_guardrail text[], p_window_seconds integer[], p_tenant text[], p_subject text[], p_agent text[],
    p_window_start timestamptz[], p_history_windows integer[], p_joining boolean[],
    p_rows bigint[], p_requests bigint[],
    p_release_rows bigint[], p_release_requests bigint[], p_release_documents bigint[],
    p_max_rows bigint[], p_max_requests bigint[], p_max_documents bigint[],
    p_doc_from integer[], p_doc_to integer[], p_documents text[]
) RETURNS SETOF ragfence.guardrail_sync_result
LANGUAGE plpgsql AS $$
DECLARE
    live integer;
    c ragfence.guardrail_counters;
    r ragfence.guardrail_sync_result;
    new_docs bigint;
    n integer;
    kept bigint;
BEGIN
    INSERT INTO ragfence.guardrail_instances (instance) VALUES (p_instance)
    ON CONFLICT (instance) DO UPDATE SET last_seen = now();
    SELECT count(*) INTO live FROM ragfence.guardrail_instances
    WHERE last_seen > now() - make_interval(secs => p_live_seconds);

    FOR i IN 1 .. coalesce(array_length(p_guardrail, 1), 0) LOOP
        INSERT INTO ragfence.guardrail_counters
            (guardrail, window_seconds, tenant, subject, agent, window_start, history_windows, first_window)
        VALUES (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i], p_window_start[i],
            p_history_windows[i],
            coalesce((SELECT min(h.first_window) FROM ragfence.guardrail_counters h
                WHERE (h.guardrail, h.window_seconds, h.tenant, h.subject, h.agent)
                    = (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i])
                  AND h.window_start < p_window_start[i]), p_window_start[i]))
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            -- A new window of the key: drop what no one reads any more.
            DELETE FROM ragfence.guardrail_counters h
            WHERE (h.guardrail, h.window_seconds, h.tenant, h.subject, h.agent)
                = (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i])
              AND h.window_start < p_window_start[i] - make_interval(secs => (p_history_windows[i] + 1)::double precision * p_window_seconds[i]);
            DELETE FROM ragfence.guardrail_documents d
            WHERE (d.guardrail, d.window_seconds, d.tenant, d.subject, d.agent)
                = (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i])
              AND d.window_start < p_window_start[i];
        END IF;

        SELECT * INTO c FROM ragfence.guardrail_counters h
        WHERE (h.guardrail, h.window_seconds, h.tenant, h.subject, h.agent, h.window_start)
            = (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i], p_window_start[i])
        FOR UPDATE;

        -- Under the row's lock, so each new document is counted once.
        WITH ins AS (
            INSERT INTO ragfence.guardrail_documents
            SELECT p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i], p_window_start[i], doc
            FROM unnest(p_documents[p_doc_from[i]:p_doc_to[i]]) AS doc
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT count(*) INTO new_docs FROM ins;

        n := greatest(c.instances + CASE WHEN p_joining[i] THEN 1 ELSE 0 END, 1);
        r.idx := i;
        r.instances := n;
        r.live_instances := live;
        r.first_window := c.first_window;
        r.row_count := c.row_count + p_rows[i];
        r.request_count := c.request_count + p_requests[i];
        r.document_count := c.document_count + new_docs;

        kept := greatest(c.held_rows - p_release_rows[i], 0);
        r.grant_rows := ragfence.guardrail_grant(p_max_rows[i], r.row_count, kept, n);
        c.held_rows := kept + r.grant_rows;
        kept := greatest(c.held_requests - p_release_requests[i], 0);
        r.grant_requests := ragfence.guardrail_grant(p_max_requests[i], r.request_count, kept, n);
        c.held_requests := kept + r.grant_requests;
        kept := greatest(c.held_documents - p_release_documents[i], 0);
        r.grant_documents := ragfence.guardrail_grant(p_max_documents[i], r.document_count, kept, n);
        c.held_documents := kept + r.grant_documents;

        UPDATE ragfence.guardrail_counters h
        SET row_count = r.row_count, request_count = r.request_count, document_count = r.document_count,
            held_rows = c.held_rows, held_requests = c.held_requests, held_documents = c.held_documents,
            instances = n, history_windows = p_history_windows[i], updated_at = now()
        WHERE (h.guardrail, h.window_seconds, h.tenant, h.subject, h.agent, h.window_start)
            = (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i], p_window_start[i]);

        SELECT coalesce(sum(h.row_count), 0) INTO r.history_rows FROM ragfence.guardrail_counters h
        WHERE (h.guardrail, h.window_seconds, h.tenant, h.subject, h.agent)
            = (p_guardrail[i], p_window_seconds[i], p_tenant[i], p_subject[i], p_agent[i])
          AND h.window_start >= p_window_start[i] - make_interval(secs => p_history_windows[i]::double precision * p_window_seconds[i])
          AND h.window_start < p_window_start[i];
        RETURN NEXT r;
    END LOOP;
END;
$$;

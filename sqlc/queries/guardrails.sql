-- name: SyncGuardrails :many
-- One instance's sync: its batch of keys in, each key's totals and the
-- instance's new grants out (see ragfence.guardrail_sync).
SELECT (r).idx::integer AS idx,
       (r).row_count::bigint AS row_count,
       (r).request_count::bigint AS request_count,
       (r).document_count::bigint AS document_count,
       (r).grant_rows::bigint AS grant_rows,
       (r).grant_requests::bigint AS grant_requests,
       (r).grant_documents::bigint AS grant_documents,
       (r).instances::integer AS instances,
       (r).history_rows::bigint AS history_rows,
       (r).first_window::timestamptz AS first_window,
       (r).live_instances::integer AS live_instances
FROM ragfence.guardrail_sync(
    sqlc.arg(instance)::text, sqlc.arg(live_seconds)::float8,
    sqlc.arg(guardrails)::text[], sqlc.arg(window_seconds)::integer[], sqlc.arg(tenants)::text[],
    sqlc.arg(subjects)::text[], sqlc.arg(agents)::text[], sqlc.arg(window_starts)::timestamptz[],
    sqlc.arg(history_windows)::integer[], sqlc.arg(joining)::boolean[],
    sqlc.arg(rows)::bigint[], sqlc.arg(requests)::bigint[],
    sqlc.arg(release_rows)::bigint[], sqlc.arg(release_requests)::bigint[], sqlc.arg(release_documents)::bigint[],
    sqlc.arg(max_rows)::bigint[], sqlc.arg(max_requests)::bigint[], sqlc.arg(max_documents)::bigint[],
    sqlc.arg(doc_from)::integer[], sqlc.arg(doc_to)::integer[], sqlc.arg(documents)::text[]
) AS r;

-- name: PruneGuardrailCounters :execrows
-- Windows older than any baseline reads, of keys no one counts any more
-- (a key's sync prunes its own).
DELETE FROM ragfence.guardrail_counters
WHERE window_start < sqlc.arg(now)::timestamptz - make_interval(secs => (history_windows + 2)::float8 * window_seconds);

-- name: PruneGuardrailDocuments :execrows
DELETE FROM ragfence.guardrail_documents
WHERE window_start < sqlc.arg(now)::timestamptz - make_interval(secs => 2 * window_seconds::float8);

-- name: PruneGuardrailInstances :execrows
DELETE FROM ragfence.guardrail_instances WHERE last_seen < now() - interval '1 day';

-- name: LockGuardrailSuspension :exec
-- Serialises the instances suspending one key, until the transaction ends.
SELECT pg_advisory_xact_lock(sqlc.arg(class)::integer, hashtext(sqlc.arg(key)::text));

-- name: GuardrailSuspensionInForce :one
-- The revocation in force a guardrail already made for the key, if any.
SELECT id FROM ragfence.revocations
WHERE tenant = sqlc.arg(tenant) AND created_by = sqlc.arg(created_by) AND kind = sqlc.arg(kind)
  AND subject = sqlc.arg(subject) AND agent IS NOT DISTINCT FROM sqlc.narg(agent)
  AND lifted_at IS NULL AND (ends_at IS NULL OR ends_at > now())
ORDER BY id
LIMIT 1;

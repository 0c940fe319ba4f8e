#!/usr/bin/env bash
# replica.sh - provide a streaming replica of the local PostgreSQL 15
# cluster for ragfence's replica tests, then print its DSN:
#
#   RAGFENCE_TEST_REPLICA_URL=postgres://postgres@127.0.0.1:5433/ragfence_test?sslmode=disable
#
# Usage: scripts/replica.sh [--quiet]
#
# Idempotent: a replica that is running and streaming costs two psql calls.
# Otherwise, as root, it lets 127.0.0.1 replicate from the primary (a
# pg_hba.conf "replication" line, then a reload), creates cluster 15/replica
# on port 5433 from `pg_basebackup -R` (which writes standby.signal and
# primary_conninfo), gives it the primary's trust lines, and starts it. With
# DATABASE_URL set (a server this script does not manage) it does nothing
# and prints nothing: the replica tests then skip, saying why.

set -euo pipefail

readonly VERSION=15
readonly PRIMARY=main
readonly CLUSTER=replica
readonly PORT=5433
readonly HOST=127.0.0.1
readonly DB=ragfence_test
readonly PGDATA_DIR=/var/lib/postgresql/$VERSION/$CLUSTER
readonly HBA=/etc/postgresql/$VERSION/$PRIMARY/pg_hba.conf
readonly LOG="${TMPDIR:-/tmp}/ragfence-replica.log"

QUIET=0
[[ "${1:-}" == "--quiet" ]] && QUIET=1
say() { ((QUIET)) || printf 'replica: %s\n' "$*" >&2; }
die() {
	printf 'replica: error: %s (log: %s)\n' "$*" "$LOG" >&2
	exit 1
}
# fd 9 (the lock) is closed for it: a server it starts would hold the lock
# for as long as it runs.
run() { "$@" >>"$LOG" 2>&1 9>&-; }

if [[ -n "${DATABASE_URL:-}" ]]; then
	say "DATABASE_URL is set: not managing a replica"
	exit 0
fi

psql_at() { psql "postgres://postgres@$HOST:$1/${2:-postgres}?sslmode=disable" -qAtX -c "$3" 2>>"$LOG"; }

streaming() {
	[[ "$(psql_at $PORT postgres 'SELECT pg_is_in_recovery()')" == "t" ]] &&
		[[ "$(psql_at $PORT postgres "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")" == "1" ]]
}

allow_replication() {
	if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$HBA"; then
		say "allowing replication from 127.0.0.1 in $HBA"
		printf 'host replication all 127.0.0.1/32 trust\n' >>"$HBA"
		psql_at 5432 postgres 'SELECT pg_reload_conf()' >/dev/null || die "could not reload the primary"
	fi
}

create_replica() {
	say "creating cluster $VERSION/$CLUSTER on port $PORT from a base backup of $VERSION/$PRIMARY"
	if pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$VERSION/$CLUSTER"; then
		run pg_dropcluster --stop "$VERSION" "$CLUSTER" || die "could not drop the broken replica"
	fi
	run pg_createcluster "$VERSION" "$CLUSTER" -p "$PORT" || die "pg_createcluster failed"
	# Keep the directory pg_createcluster made (the parent belongs to root).
	find "$PGDATA_DIR" -mindepth 1 -delete
	run runuser -u postgres -- pg_basebackup -h "$HOST" -p 5432 -U postgres -D "$PGDATA_DIR" -R -X stream -c fast ||
		die "pg_basebackup failed"
	# The same trust lines as the primary, for the tests' logins.
	cp "$HBA" "/etc/postgresql/$VERSION/$CLUSTER/pg_hba.conf"
	printf "port = %d\nhot_standby = on\n" "$PORT" >"/etc/postgresql/$VERSION/$CLUSTER/conf.d/ragfence-replica.conf"
}

start_replica() {
	run pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$CLUSTER" start || die "could not start the replica"
	for _ in $(seq 1 50); do
		streaming && return 0
		sleep 0.2
	done
	die "the replica does not stream from the primary"
}

main() {
	exec 9>"${TMPDIR:-/tmp}/ragfence-replica.lock"
	flock 9
	if ! streaming; then
		[[ $EUID -eq 0 ]] || die "run as root to create the replica cluster"
		allow_replication
		if [[ -d "$PGDATA_DIR" && -f "$PGDATA_DIR/standby.signal" ]] && start_replica 2>/dev/null; then
			say "started the existing replica"
		else
			create_replica
			start_replica
		fi
	fi
	# The test database exists once the primary has it (devdb.sh) and the
	# replica has replayed its creation.
	for _ in $(seq 1 50); do
		[[ "$(psql_at $PORT postgres "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" == "1" ]] && break
		sleep 0.2
	done
	printf 'RAGFENCE_TEST_REPLICA_URL=postgres://postgres@%s:%d/%s?sslmode=disable\n' "$HOST" "$PORT" "$DB"
}

main

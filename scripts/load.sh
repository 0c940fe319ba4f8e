#!/usr/bin/env bash
# load.sh - fixed-rate load and fault runs against `ragfence serve`, with
# vegeta (pinned in tools/load/go.mod, built into bin/vegeta by
# `make load-tools`). Loopback only; every run is bounded (RATE requests/s
# for DURATION, at most 20 s) and everything it starts is stopped at exit.
#
# Usage: scripts/load.sh [MODE...]   (default: baseline)
#
#   baseline    the load alone: p50/p99/max, errors, throughput
#   db-restart  the primary restarted mid-load (pg_ctlcluster ... 15 main restart)
#   pool        --pool-max-conns 2, --statement-timeout 250ms, and chunks locked
#               (ACCESS EXCLUSIVE) mid-load so every search is slow: answers
#               must be 503/504 quickly, never a hang
#   sigterm     SIGTERM mid-load, --audit-mode batched and sync: 200 answers
#               whose X-Decision-Id has no ragfence.audit_log row
#   sigkill     the same with SIGKILL
#   replica     --db-replica (15/replica, port 5433) stopped mid-load, then
#               restarted with scripts/replica.sh
#   all         every mode above, in that order
#
# Environment: RATE (default 200), DURATION (default 12s), CHUNKS (20000),
# KEEP=1 keeps the scratch folder. It creates and drops a scratch database
# ragfence_load_<pid> on the local cluster (127.0.0.1:5432).

set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-200}
DURATION=${DURATION:-12s}
CHUNKS=${CHUNKS:-20000}
readonly PG=postgres://postgres@127.0.0.1:5432
readonly REPLICA_PORT=5433
readonly DBNAME=ragfence_load_$$
readonly DB="$PG/$DBNAME?sslmode=disable"
readonly REPLICA_DB="postgres://postgres@127.0.0.1:$REPLICA_PORT/$DBNAME?sslmode=disable"
readonly VEGETA=bin/vegeta RAGFENCE=bin/ragfence
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ragfence-load.XXXXXX")
SERVER_PID="" PORT="" REPLICA_STOPPED=0 LOCK_PID="" AT_PIDS=()

say() { printf 'load: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
psql_db() { psql "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }

cleanup() {
	set +e
	[[ -n "$LOCK_PID" ]] && kill "$LOCK_PID" 2>/dev/null
	stop_server TERM
	if ((REPLICA_STOPPED)); then scripts/replica.sh --quiet >/dev/null; fi
	# The primary must be up again whatever happened to it.
	pg_lsclusters -h | awk '$1 == 15 && $2 == "main" {print $4}' | grep -q online ||
		pg_ctlcluster --skip-systemctl-redirect 15 main start
	psql_db "$PG/postgres?sslmode=disable" "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" 2>/dev/null
	if [[ "${KEEP:-0}" == 1 ]]; then say "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server NAME FLAGS...: serve on a free loopback port, wait for /readyz.
start_server() {
	local name=$1
	shift
	PORT=$(free_port)
	"$RAGFENCE" serve --db "$DB" --policy "$DIR/demo/policy.yaml" \
		--jwt-secret-file "$DIR/demo/jwt-secret" --addr "127.0.0.1:$PORT" \
		--log-level warn "$@" >"$DIR/serve-$name.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && {
			make_targets
			return 0
		}
		kill -0 "$SERVER_PID" 2>/dev/null || die "serve exited: $(tail -5 "$DIR/serve-$name.log")"
		sleep 0.1
	done
	die "serve is not ready after 10 s"
}

# stop_server SIG: signal the server and wait (bounded) for it to exit.
stop_server() {
	[[ -n "$SERVER_PID" ]] || return 0
	kill -"$1" "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 1 250); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}

# Five users of three tenants x the demo's 40 requests, round-robin.
make_targets() {
	local u tok f
	: >"$DIR/targets"
	for u in alice bob carol dave erin; do
		tok=$("$RAGFENCE" token --jwt-secret-file "$DIR/demo/jwt-secret" --subject "$DIR/demo/subjects/$u.json" --lifetime 10m)
		for f in "$DIR"/demo/requests/*.json; do
			printf 'POST http://127.0.0.1:%s/v1/retrieve\nAuthorization: Bearer %s\nContent-Type: application/json\n@%s\n\n' \
				"$PORT" "$tok" "$f" >>"$DIR/targets"
		done
	done
}

# attack NAME [DURATION]: the fixed-rate attack, results kept in DIR/NAME.bin.
attack() {
	local name=$1 dur=${2:-$DURATION}
	"$VEGETA" attack -targets "$DIR/targets" -rate "$RATE" -duration "$dur" -timeout 10s \
		-max-workers 200 -keepalive=true >"$DIR/$name.bin"
}

# report NAME: vegeta's report, the largest latency, and per second of the
# run the status codes (0 = no HTTP answer: connection refused or reset).
report() {
	local name=$1
	echo "### $name (rate $RATE/s)"
	"$VEGETA" report -type text <"$DIR/$name.bin"
	"$VEGETA" encode --to json <"$DIR/$name.bin" >"$DIR/$name.json"
	jq -rs '
		(map(.timestamp | .[0:19] + "Z" | fromdate) | min) as $t0 |
		"max latency: \((map(.latency) | max) / 1e6 | floor) ms",
		"per second: " + (group_by((.timestamp | .[0:19] + "Z" | fromdate) - $t0)
			| map("\((.[0].timestamp | .[0:19] + "Z" | fromdate) - $t0)s[" +
				(group_by(.code) | map("\(.[0].code)x\(length)") | join(" ")) +
				" max \((map(.latency) | max) / 1e6 | floor)ms]") | join(" "))
	' "$DIR/$name.json"
	echo
}

# unaudited NAME: the 200 answers whose X-Decision-Id has no audit row.
unaudited() {
	local name=$1 served missing
	"$VEGETA" encode --to json <"$DIR/$name.bin" |
		jq -r 'select(.code == 200) | .headers["X-Decision-Id"][0] // "MISSING-HEADER"' >"$DIR/$name.ids"
	served=$(wc -l <"$DIR/$name.ids")
	missing=$(psql "$DB" -qAtX -v ON_ERROR_STOP=1 \
		-c "CREATE TEMP TABLE ids(id text)" \
		-c "\\copy ids FROM '$DIR/$name.ids'" \
		-c "SELECT count(*) FROM ids WHERE NOT EXISTS (SELECT 1 FROM ragfence.audit_log a WHERE a.decision_id = ids.id)")
	echo "$name: $served answers 200 received, $missing without an audit row"
}

# at SECONDS COMMAND...: run COMMAND in the background after SECONDS.
at() {
	local s=$1
	shift
	(
		sleep "$s"
		say "t=${s}s: $*"
		"$@"
	) &
	AT_PIDS+=($!)
}

# settle: wait for the at jobs (not for the server).
settle() {
	local p
	for p in "${AT_PIDS[@]}"; do wait "$p" || true; done
	AT_PIDS=()
}

provision() {
	make --no-print-directory build load-tools >&2
	psql_db "$PG/postgres?sslmode=disable" "CREATE DATABASE $DBNAME"
	psql_db "$DB" "CREATE EXTENSION vector"
	"$RAGFENCE" migrate --db "$DB" >"$DIR/migrate.log" 2>&1
	"$RAGFENCE" demo --db "$DB" --out "$DIR/demo" --chunks "$CHUNKS" >"$DIR/demo.log" 2>&1
	head -1 "$DIR/demo.log" >&2
	psql_db "$DB" "VACUUM ANALYZE"
}

run_baseline() {
	start_server baseline
	attack warmup 3s
	attack baseline
	report baseline
	stop_server TERM
}

run_db_restart() {
	start_server db-restart
	attack warmup 2s
	at 4 pg_ctlcluster --skip-systemctl-redirect 15 main restart
	attack db-restart
	settle
	report db-restart
	pg_lsclusters
	stop_server TERM
}

run_pool() {
	start_server pool --pool-max-conns 2 --statement-timeout 250ms
	attack warmup 2s
	# A transaction that holds chunks for 6 s from t=4s: every search waits
	# on the lock until its statement timeout.
	(sleep 4 && say "t=4s: LOCK TABLE chunks for 6 s" &&
		psql_db "$DB" "BEGIN; LOCK TABLE public.chunks IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(6); COMMIT" >/dev/null) &
	LOCK_PID=$!
	attack pool
	wait "$LOCK_PID" || true
	LOCK_PID=""
	report pool
	stop_server TERM
}

run_signal() {
	local sig=$1 mode
	for mode in batched sync; do
		start_server "$sig-$mode" --audit-mode "$mode"
		attack warmup 2s
		local pid=$SERVER_PID
		at 4 kill -"$sig" "$pid"
		attack "$sig-$mode" 6s
		settle
		stop_server TERM
		report "$sig-$mode"
		unaudited "$sig-$mode"
		echo
	done
}

run_replica() {
	start_server replica --db-replica "$REPLICA_DB"
	attack warmup 2s
	at 3 pg_ctlcluster --skip-systemctl-redirect 15 replica stop
	REPLICA_STOPPED=1
	at 10 bash -c "scripts/replica.sh --quiet >/dev/null"
	attack replica 16s
	settle
	REPLICA_STOPPED=0
	report replica
	pg_lsclusters
	stop_server TERM
}

main() {
	local modes=("$@")
	((${#modes[@]})) || modes=(baseline)
	[[ "${modes[*]}" == all ]] && modes=(baseline db-restart pool sigterm sigkill replica)
	provision
	local m
	for m in "${modes[@]}"; do
		case $m in
		baseline) run_baseline ;;
		db-restart) run_db_restart ;;
		pool) run_pool ;;
		sigterm) run_signal TERM ;;
		sigkill) run_signal KILL ;;
		replica) run_replica ;;
		*) die "unknown mode $m" ;;
		esac
	done
}

main "$@"

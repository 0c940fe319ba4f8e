#!/usr/bin/env bash
# devdb.sh - provide a PostgreSQL + pgvector (>= 0.8.0) database for ragfence
# development and tests, then print the DSNs as shell-sourceable lines:
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/ragfence?sslmode=disable
#   RAGFENCE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/ragfence_test?sslmode=disable
#
# Usage: scripts/devdb.sh [--quiet]
#
# Only the DSN lines go to stdout; everything else goes to stderr, prefixed
# "devdb: ", so callers can do: eval "$(scripts/devdb.sh --quiet)".
#
# With DATABASE_URL set, the local cluster and apt are left alone: the script
# only checks that the given database(s) accept CREATE EXTENSION vector.
#
# Without it (fresh Debian bookworm, run as root) it installs/starts the local
# cluster and, because bookworm does not package pgvector, builds pgvector
# from Debian trixie's source package. Everything is idempotent; when all is
# in place a run costs a handful of psql round trips and no apt calls.
# Server configuration is never changed.

set -euo pipefail

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_USER=postgres
readonly DB_MAIN=ragfence
readonly DB_TEST=ragfence_test
readonly MIN_VECTOR=0.8.0
# Suite whose source package we build; its archive URI comes from the
# machine's own apt sources at run time, never from this file.
readonly SRC_SUITE=trixie
readonly SRC_LIST=/etc/apt/sources.list.d/ragfence-devdb-trixie-src.list
readonly LOG="${TMPDIR:-/tmp}/ragfence-devdb.log"

QUIET=0
USE_SOCKET=0 # 1 = TCP login refused; talk to the server via runuser + socket
WORKDIR=""

say() { ((QUIET)) || printf 'devdb: %s\n' "$*" >&2; }
warn() { printf 'devdb: warning: %s\n' "$*" >&2; }
DIED=0
die() {
	DIED=1
	printf 'devdb: error: %s\n' "$*" >&2
	exit 1
}

# Run a noisy command (apt, make, pg_ctlcluster). Its output is kept in $LOG
# so a failure can be diagnosed even with --quiet; without --quiet it is also
# shown. fd 9 (our lock) is closed for it: a server it starts would inherit
# the lock and hold it for as long as PostgreSQL runs.
run() {
	if ((QUIET)); then
		"$@" >>"$LOG" 2>&1 9>&-
	else
		"$@" 2>&1 9>&- | tee -a "$LOG" >&2
	fi
}

# The trixie entry must never outlive this run: a stray deb-src line would
# make the machine's next global "apt-get update" fetch trixie indexes.
remove_temp() {
	if [[ -n "$WORKDIR" ]]; then
		rm -f "$SRC_LIST"
		rm -rf "$WORKDIR"
		WORKDIR=""
	fi
}

on_exit() {
	local rc=$?
	# set -e may stop us on a command not wrapped in die(); still keep the
	# promise of one "devdb: error:" line per failure.
	if ((rc != 0 && DIED == 0 && rc < 128)); then
		printf 'devdb: error: unexpected failure (exit %s); rerun without --quiet and see %s\n' "$rc" "$LOG" >&2
	fi
	remove_temp
}

usage() {
	cat >&2 <<'EOF'
usage: scripts/devdb.sh [--quiet]
Ensures PostgreSQL + pgvector >= 0.8.0 and the databases ragfence and
ragfence_test, then prints DATABASE_URL=... and RAGFENCE_TEST_DATABASE_URL=...
on stdout. If DATABASE_URL is set, only checks that database instead.
EOF
}

parse_args() {
	while (($#)); do
		case "$1" in
		-q | --quiet) QUIET=1 ;;
		-h | --help)
			usage
			exit 0
			;;
		*) die "unknown argument '$1'; run scripts/devdb.sh --help" ;;
		esac
		shift
	done
}

# True if version $1 >= version $2 (Debian/pgvector versions sort fine with -V).
version_ge() {
	[[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]
}

# Print NAME=VALUE so that the line can be sourced by a shell. Typical DSNs
# contain only characters that need no quoting and are printed verbatim;
# anything else (e.g. '&' in a user-supplied URL) is single-quoted.
print_var() {
	local name=$1 value=$2
	if [[ "$value" =~ ^[A-Za-z0-9@:/?=._%+,-]*$ ]]; then
		printf '%s=%s\n' "$name" "$value"
	else
		printf "%s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
	fi
}

# ---------------------------------------------------------------------------
# DATABASE_URL mode: someone else's server; only check it.
# ---------------------------------------------------------------------------

# psql against a URL: no psqlrc, no password prompt, stop on first error.
psql_url() {
	local url=$1
	shift
	psql -X -w -q -A -t -v ON_ERROR_STOP=1 -d "$url" "$@"
}

check_url() {
	local label=$1 url=$2 err ver
	if ! err=$(psql_url "$url" -c 'SELECT 1' 2>&1 >/dev/null); then
		die "cannot connect to $label (${err%%$'\n'*}); fix the URL/server or unset $label to use the local cluster"
	fi
	if ! err=$(psql_url "$url" -c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS vector' 2>&1 >/dev/null); then
		die "CREATE EXTENSION vector fails in $label (${err%%$'\n'*}); install pgvector >= $MIN_VECTOR on that server or grant the right to create it"
	fi
	ver=$(psql_url "$url" -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'") ||
		die "cannot read the vector version in $label; check that server"
	if ! version_ge "$ver" "$MIN_VECTOR"; then
		warn "$label has pgvector $ver, ragfence needs >= $MIN_VECTOR; run ALTER EXTENSION vector UPDATE there"
	fi
}

remote_mode() {
	local test_url=${RAGFENCE_TEST_DATABASE_URL:-$DATABASE_URL}
	command -v psql >/dev/null ||
		die "psql not found; install the PostgreSQL client (apt-get install postgresql-client)"
	say "DATABASE_URL is set; checking it and leaving the local cluster alone"
	check_url DATABASE_URL "$DATABASE_URL"
	if [[ "$test_url" != "$DATABASE_URL" ]]; then
		check_url RAGFENCE_TEST_DATABASE_URL "$test_url"
	fi
	print_var DATABASE_URL "$DATABASE_URL"
	print_var RAGFENCE_TEST_DATABASE_URL "$test_url"
}

# ---------------------------------------------------------------------------
# Local mode: cluster on 127.0.0.1:5432.
# ---------------------------------------------------------------------------

# Serialise concurrent runs (e.g. parallel make targets): they would
# otherwise race on apt, on the temporary source entry and on CREATE DATABASE.
take_lock() {
	local lock=/run/lock/ragfence-devdb.lock
	[[ -w /run/lock ]] || lock="${TMPDIR:-/tmp}/ragfence-devdb.lock"
	exec 9>"$lock"
	flock -n 9 && return 0
	say "waiting for another devdb.sh run to finish"
	flock -w 900 9 || die "$lock still held after 15 min; find its holder with: fuser -v $lock"
}

require_root() {
	((EUID == 0)) || die "$1 needs root; rerun as root or set DATABASE_URL to an existing pgvector database"
}

# apt-get update, but only when a wanted package has no install candidate
# (stale or missing lists); a full update costs seconds we avoid if we can.
apt_install() {
	local pkg policy need_update=0
	require_root "installing $*"
	for pkg in "$@"; do
		# Captured, not piped into grep -q: an early grep exit would SIGPIPE
		# apt-cache and, with pipefail, look like a missing candidate.
		policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
		[[ "$policy" =~ Candidate:\ [^\(] ]] || need_update=1
	done
	if ((need_update)); then
		say "apt-get update (package lists lack: $*)"
		run apt-get update || die "apt-get update failed; check network/apt sources, see $LOG"
	fi
	say "installing $*"
	if ! run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
		# Lists can be present but outdated (404 on a superseded .deb).
		((need_update)) || run apt-get update || true
		run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
			die "apt-get install $* failed; see $LOG"
	fi
}

server_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }

# Prints "version name status" of the cluster configured for our port.
cluster_on_port() {
	pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }'
}

# Highest PostgreSQL server version installed, for pg_createcluster.
newest_pg_version() {
	local d
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[[ -x "$d" ]] && basename "$(dirname "$(dirname "$d")")"
	done | sort -V | tail -n1
}

# Install, create and/or start the local cluster as needed, then wait for it.
ensure_server() {
	local info ver name status i
	if ! command -v psql >/dev/null || ! command -v pg_lsclusters >/dev/null; then
		apt_install postgresql
	fi
	require_root "starting PostgreSQL"

	info=$(cluster_on_port)
	if [[ -z "$info" ]]; then
		if [[ -n "$(pg_lsclusters -h 2>/dev/null)" ]]; then
			die "no PostgreSQL cluster uses port $PG_PORT; move one there (pg_conftool ... set port $PG_PORT) or set DATABASE_URL"
		fi
		ver=$(newest_pg_version)
		[[ -n "$ver" ]] || die "no PostgreSQL server binaries found; apt-get install postgresql"
		say "creating cluster $ver/main on port $PG_PORT"
		run pg_createcluster -p "$PG_PORT" "$ver" main ||
			die "pg_createcluster $ver main failed; see $LOG"
		info=$(cluster_on_port)
	fi
	read -r ver name status <<<"$info"

	if [[ "$status" != online* ]]; then
		say "starting cluster $ver/$name"
		# --skip-systemctl-redirect: containers often have no running systemd.
		run pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
			die "could not start cluster $ver/$name; see /var/log/postgresql/postgresql-$ver-$name.log"
	fi

	for ((i = 0; i < 60; i++)); do
		server_ready && return 0
		sleep 0.5
	done
	die "PostgreSQL on $PG_HOST:$PG_PORT not ready after 30 s; check /var/log/postgresql/"
}

# psql as superuser on the local server, TCP or (fallback) socket via runuser.
psql_local() {
	local db=$1
	shift
	if ((USE_SOCKET)); then
		runuser -u postgres -- psql -X -w -q -A -t -v ON_ERROR_STOP=1 -d "$db" "$@"
	else
		psql -X -w -q -A -t -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"
	fi
}

# One round trip that both proves we can log in and fetches what the fast
# path needs: the creatable vector version (line 1, "none" if absent) and
# which of our databases exist (further lines). Sets HAVE_VECTOR, HAVE_DBS,
# or STATE_ERR (first line of psql's complaint) on failure.
HAVE_VECTOR=""
HAVE_DBS=""
STATE_ERR=""
read_state() {
	local out
	if ! out=$(psql_local postgres \
		-c "SELECT coalesce(max(default_version), 'none') FROM pg_available_extensions WHERE name = 'vector'" \
		-c "SELECT datname FROM pg_database WHERE datname IN ('$DB_MAIN', '$DB_TEST')" 2>&1); then
		STATE_ERR=${out%%$'\n'*}
		return 1
	fi
	HAVE_VECTOR=${out%%$'\n'*}
	[[ "$HAVE_VECTOR" == none ]] && HAVE_VECTOR=""
	HAVE_DBS=""
	[[ "$out" == *$'\n'* ]] && HAVE_DBS=${out#*$'\n'}
	return 0
}

# Get a working superuser connection, starting/installing the server only
# if the first login attempt fails (keeps the usual run to one psql call).
connect() {
	read_state && return 0
	server_ready || ensure_server
	read_state && return 0
	# The server runs but refuses us over TCP. Our machines trust local TCP;
	# where they do not, peer auth on the socket still lets root act as
	# postgres. pg_hba.conf stays untouched.
	if ((EUID == 0)) && runuser -u postgres -- psql -X -w -q -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
		warn "TCP login as $PG_USER refused ($STATE_ERR); using the local socket via runuser instead"
		warn "the printed DSNs need trust (or a password) for $PG_USER on $PG_HOST in pg_hba.conf"
		USE_SOCKET=1
		read_state && return 0
	fi
	die "cannot log in to $PG_HOST:$PG_PORT as $PG_USER ($STATE_ERR); allow it in pg_hba.conf or set DATABASE_URL"
}

server_major() {
	local num
	num=$(psql_local postgres -c 'SHOW server_version_num')
	echo $((num / 10000))
}

# URI of the machine's main Debian archive: the "deb" entry whose Suites
# include our own codename (so not "<codename>-security"). Prints
# "URI<TAB>signed-by-file" (the latter may be empty).
main_archive() {
	local codename found="" files=()
	# shellcheck source=/dev/null
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n "$codename" ]] || return 1
	shopt -s nullglob
	files=(/etc/apt/sources.list.d/*.sources)
	if ((${#files[@]})); then
		found=$(awk -v cn="$codename" '
			function reset() { types = ""; uris = ""; suites = ""; signed = ""; enabled = "yes" }
			function emit() {
				if (uris != "" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " cn " ") && tolower(enabled) != "no") {
					split(uris, u, " "); print u[1] "\t" signed; done = 1; exit
				}
				reset()
			}
			BEGIN { reset() }
			FNR == 1 && NR > 1 { emit() }
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { emit(); next }
			/^[ \t]/ { next } # continuation line (e.g. inline key): not needed
			{
				key = tolower($0); sub(/:.*/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = val
				else if (key == "signed-by") signed = (val ~ /^\//) ? val : ""
			}
			END { if (!done) emit() }
		' "${files[@]}")
	fi
	files=(/etc/apt/sources.list.d/*.list)
	shopt -u nullglob
	[[ -f /etc/apt/sources.list ]] && files=(/etc/apt/sources.list "${files[@]}")
	if [[ -z "$found" ]] && ((${#files[@]})); then
		found=$(awk -v cn="$codename" '
			/^[ \t]*#/ || NF == 0 || $1 != "deb" { next }
			{
				signed = ""; i = 2
				if ($2 ~ /^\[/) {
					opts = ""
					while (i <= NF) { opts = opts " " $i; if ($(i++) ~ /\]$/) break }
					if (match(opts, /signed-by=[^] ]+/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
				}
				if ($(i + 1) == cn) { print $i "\t" signed; exit }
			}
		' "${files[@]}")
	fi
	[[ -n "$found" ]] && printf '%s\n' "$found"
}

# Fetch the trixie pgvector source package into $WORKDIR/src using a
# private apt configuration: only our deb-src entry, lists and caches in
# $WORKDIR, so the machine's own apt state is never touched.
fetch_pgvector_source() {
	local archive uri signed opts apt_opts
	archive=$(main_archive) ||
		die "no main Debian archive found in /etc/apt/sources.list{,.d}; add a deb entry for your release's suite"
	IFS=$'\t' read -r uri signed <<<"$archive"
	opts=""
	[[ -n "$signed" && -r "$signed" ]] && opts="[signed-by=$signed] "

	say "fetching pgvector source from the $SRC_SUITE archive of $uri"
	# Created only now, right before use; remove_temp() deletes it on any exit.
	printf '# temporary, created by ragfence scripts/devdb.sh; removed when it exits\ndeb-src %s%s %s main\n' \
		"$opts" "$uri" "$SRC_SUITE" >"$SRC_LIST"

	mkdir -p "$WORKDIR/lists/partial" "$WORKDIR/src"
	apt_opts=(
		-o "Dir::Etc::sourcelist=$SRC_LIST"
		-o "Dir::Etc::sourceparts=-"
		-o "Dir::State::Lists=$WORKDIR/lists"
		-o "Dir::Cache::pkgcache=$WORKDIR/pkgcache.bin"
		-o "Dir::Cache::srcpkgcache=$WORKDIR/srcpkgcache.bin"
		-o "APT::Get::List-Cleanup=0"
		# $WORKDIR is private to root, so apt's _apt download user cannot write there.
		-o "APT::Sandbox::User=root"
	)
	run apt-get "${apt_opts[@]}" update ||
		die "apt-get update for $SRC_SUITE sources failed; check network access to $uri, see $LOG"
	(cd "$WORKDIR/src" && run apt-get "${apt_opts[@]}" source pgvector) ||
		die "apt-get source pgvector ($SRC_SUITE) failed; see $LOG"
}

build_pgvector() {
	local major=$1 pg_config srcdir
	pg_config=/usr/lib/postgresql/$major/bin/pg_config
	[[ -x "$pg_config" ]] || die "$pg_config missing; apt-get install postgresql-server-dev-$major"
	srcdir=$(find "$WORKDIR/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
	[[ -n "$srcdir" ]] || die "unpacked pgvector source not found; see $LOG"
	say "building ${srcdir##*/} for PostgreSQL $major"
	# OPTFLAGS= drops upstream's -march=native (as Debian's package does) so
	# the library also works if this machine's image runs on another CPU.
	run make -C "$srcdir" -j"$(nproc)" PG_CONFIG="$pg_config" OPTFLAGS= ||
		die "building pgvector failed; see $LOG"
	run make -C "$srcdir" install PG_CONFIG="$pg_config" OPTFLAGS= ||
		die "installing pgvector failed; see $LOG"
}

ensure_pgvector() {
	local have=$HAVE_VECTOR major
	if [[ -n "$have" ]] && version_ge "$have" "$MIN_VECTOR"; then
		return 0 # fast path: nothing to install
	fi
	say "pgvector >= $MIN_VECTOR not available (have: ${have:-none}); building it from Debian $SRC_SUITE source"
	require_root "installing pgvector"
	major=$(server_major) || die "cannot read server_version_num; check the server log"
	: >"$LOG"
	WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/ragfence-devdb.XXXXXX")
	rm -f "$SRC_LIST" # a stale one from a SIGKILLed run; we hold the lock
	install_build_deps "$major"
	fetch_pgvector_source
	build_pgvector "$major"
	remove_temp

	read_state || die "lost the connection to PostgreSQL ($STATE_ERR); check the server log"
	have=$HAVE_VECTOR
	if [[ -z "$have" ]] || ! version_ge "$have" "$MIN_VECTOR"; then
		die "pgvector still not available after install (have: ${have:-none}); see $LOG"
	fi
	say "pgvector $have installed"
}

install_build_deps() {
	local major=$1 missing=()
	dpkg -s "postgresql-server-dev-$major" >/dev/null 2>&1 || missing+=("postgresql-server-dev-$major")
	command -v make >/dev/null || missing+=(make)
	command -v gcc >/dev/null || missing+=(gcc)
	command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
	if ((${#missing[@]})); then
		apt_install "${missing[@]}"
	fi
}

# Create a database if missing, then make sure pgvector is there and current.
ensure_database() {
	local db=$1 ver
	if [[ $'\n'"$HAVE_DBS"$'\n' != *$'\n'"$db"$'\n'* ]]; then
		say "creating database $db"
		psql_local postgres -c "CREATE DATABASE \"$db\"" ||
			die "CREATE DATABASE $db failed; check the server log"
	fi
	ver=$(psql_local "$db" -c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS vector' \
		-c "SELECT extversion FROM pg_extension WHERE extname = 'vector'") ||
		die "CREATE EXTENSION vector failed in $db; check the server log"
	if ! version_ge "$ver" "$MIN_VECTOR"; then
		# An older pgvector was created here before; move it to the new library.
		say "updating vector $ver in $db"
		psql_local "$db" -c 'ALTER EXTENSION vector UPDATE' ||
			die "ALTER EXTENSION vector UPDATE failed in $db; drop and recreate the extension"
	fi
}

local_mode() {
	take_lock
	connect
	ensure_pgvector
	ensure_database "$DB_MAIN"
	ensure_database "$DB_TEST"
	print_var DATABASE_URL "postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB_MAIN?sslmode=disable"
	print_var RAGFENCE_TEST_DATABASE_URL "postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB_TEST?sslmode=disable"
}

main() {
	parse_args "$@"
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	if [[ -n "${DATABASE_URL:-}" ]]; then
		remote_mode
	else
		local_mode
	fi
}

main "$@"

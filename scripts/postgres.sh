#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests (no systemd, no Debian cluster config):
#   scripts/postgres.sh start    initdb if needed, start, make role + database `dyncast`, print URL
#   scripts/postgres.sh stop     stop it (the data directory stays, for a quick next start)
#   scripts/postgres.sh status   exit 0 if it is running
#   scripts/postgres.sh url      print the store URL (postgresql+psycopg://...), running or not
#   scripts/postgres.sh clean    stop it and remove its directory
# The cluster lives in $DYNCAST_PG_DIR (default /var/tmp/dyncast-pg, owned by the `postgres`
# user), listens on 127.0.0.1:$DYNCAST_PG_PORT (default 55432, beside any system cluster on
# 5432) and on a unix socket in that directory. It is a test cluster: fsync is off (a crash of
# the machine, not of the controller, can lose it). Run as root (or as postgres); needs the
# Debian package `postgresql` (scripts/setup.sh installs it). Messages go to stderr; stdout has
# only the URL.
set -euo pipefail

DIR=${DYNCAST_PG_DIR:-/var/tmp/dyncast-pg}
PORT=${DYNCAST_PG_PORT:-55432}
DATA="$DIR/data"
LOG="$DIR/server.log"
ROLE=dyncast
PASSWORD=dyncast  # local test cluster on 127.0.0.1 only
DB=dyncast
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"

say() { echo "postgres: $*" >&2; }
die() { echo "postgres: ERROR: $*" >&2; exit 1; }

# The newest installed server version's binaries (Debian keeps them off PATH).
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ] ||
    die "no PostgreSQL server under /usr/lib/postgresql (run scripts/setup.sh)"
VERSION=$(basename "$(dirname "$BIN")")

# as_postgres CMD...: run a command as the postgres user (the server refuses to run as root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")  # from a directory postgres may read
    else
        die "run as root or as postgres"
    fi
}

running() { [ -f "$DATA/PG_VERSION" ] && as_postgres "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

# psql_admin SQL: run SQL as the superuser over the unix socket; print tuples only.
psql_admin() {
    as_postgres "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres \
        -d postgres -tAc "$1"
}

init() {
    getent passwd postgres >/dev/null || die "no postgres user (run scripts/setup.sh)"
    if [ -e "$DIR" ] && [ "$(stat -c %U "$DIR")" != postgres ]; then
        die "$DIR exists and is not owned by postgres; remove it or set DYNCAST_PG_DIR"
    fi
    if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$VERSION" ]; then
        say "removing $DATA (made by PostgreSQL $(cat "$DATA/PG_VERSION"), not $VERSION)"
        rm -rf "$DATA"
    fi
    [ -f "$DATA/PG_VERSION" ] && return 0
    install -d -o postgres -g postgres -m 755 "$DIR"  # the socket is in it; data/ is 700
    rm -rf "$DATA"
    say "initdb $DATA (PostgreSQL $VERSION)"
    local log
    log=$(mktemp /tmp/dyncast-initdb.XXXXXX)
    if ! as_postgres "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 --no-sync >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "initdb failed"
    fi
    rm -f "$log"
}

# answers SECONDS: the server accepts connections on its socket within that many seconds.
answers() {
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        "$BIN/pg_isready" -q -h "$DIR" -p "$PORT" && return 0
        sleep 0.2
    done
    return 1
}

start() {
    if running && ! answers 10; then  # e.g. its postmaster was just killed
        say "the server in $DATA does not answer; stopping it"
        as_postgres "$BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 30 -s || true
    fi
    if ! running; then
        init
        say "starting on 127.0.0.1:$PORT and $DIR/.s.PGSQL.$PORT (log: $LOG)"
        as_postgres "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 60 -s -o "\
            -c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200 -c shared_buffers=64MB" ||
            { tail -n 30 "$LOG" >&2 || true; die "the server did not start"; }
    fi
    if [ -z "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]; then
        psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >/dev/null
    fi
    if [ -z "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
        psql_admin "CREATE DATABASE $DB OWNER $ROLE" >/dev/null
    fi
    echo "$URL"
}

stop() {
    if running; then
        as_postgres "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 -s
        say "stopped"
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) running ;;
    url) echo "$URL" ;;
    clean) stop; rm -rf "$DIR" ;;
    *) echo "usage: $0 start|stop|status|url|clean" >&2; exit 2 ;;
esac

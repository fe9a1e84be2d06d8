#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL for plp's tests and local scale-out runs.
#
#   scripts/services.sh start   # install if missing, start both, wait, print the env to export
#   scripts/services.sh stop    # stop both (data under /tmp/plp-services is kept until `clean`)
#   scripts/services.sh status  # exit 0 when both answer
#   scripts/services.sh clean   # stop and delete /tmp/plp-services
#
# Idempotent: starting twice leaves the running servers alone. Runs as root (installs with
# apt-get, runs PostgreSQL as the `postgres` user because initdb refuses root). Both listen on
# 127.0.0.1 only; PostgreSQL trusts local connections, so never use this outside tests.
set -euo pipefail

BASE=${PLP_SERVICES_DIR:-/tmp/plp-services}
REDIS_PORT=${PLP_SERVICES_REDIS_PORT:-6390}
PG_PORT=${PLP_SERVICES_PG_PORT:-5439}
PG_BIN=${PLP_SERVICES_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DATA="$BASE/pg"
PG_DB=plp_test
REDIS_DIR="$BASE/redis"

log() { echo "services: $*" >&2; }

as_postgres() {
    if command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

install_missing() {
    local packages=()
    command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
    [ -x "$PG_BIN/initdb" ] || packages+=(postgresql-15)
    if [ ${#packages[@]} -gt 0 ]; then
        log "installing ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$BASE" postgres
}

redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
pg_up() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }

start_redis() {
    if redis_up; then
        return
    fi
    mkdir -p "$REDIS_DIR"
    # No RDB snapshots, no AOF: a test server that forgets everything when it stops.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
        --save '' --appendonly no --databases 64 --protected-mode yes
}

start_postgres() {
    if pg_up; then
        return
    fi
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
        rm -rf "$PG_DATA"
        mkdir -p "$PG_DATA"
        chown postgres: "$PG_DATA"
        chmod 700 "$PG_DATA"
        as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    # Speed over durability: this cluster holds nothing worth keeping.
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 30 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DATA \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200" >/dev/null
}

wait_for() {
    local name=$1 check=$2
    for _ in $(seq 1 100); do
        if $check; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer in 10 s"
    return 1
}

ensure_database() {
    local exists
    exists=$(as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres \
        -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" 2>/dev/null || true)
    if [ "$exists" != "1" ]; then
        as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
    fi
}

print_env() {
    echo "export PLP_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    echo "export PLP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

stop_all() {
    if [ -f "$REDIS_DIR/redis.pid" ] && redis_up; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    if [ -s "$PG_DATA/PG_VERSION" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

case "${1:-start}" in
    start)
        install_missing
        start_redis
        start_postgres
        wait_for redis redis_up
        wait_for postgresql pg_up
        ensure_database
        print_env
        ;;
    stop)
        stop_all
        ;;
    status)
        redis_up && pg_up
        ;;
    clean)
        stop_all
        rm -rf "$BASE"
        ;;
    env)
        print_env
        ;;
    *)
        echo "usage: $0 start|stop|status|clean|env" >&2
        exit 2
        ;;
esac

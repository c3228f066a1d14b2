# shellcheck shell=bash
# Makes a Postgres and a Redis available and exports DATABASE_URL and REDIS_URL.
#
#   . scripts/services.sh
#   trap stop_services EXIT    # first: stops only the servers ensure_services started,
#   ensure_services            # even when it fails half-way; exports DATABASE_URL, REDIS_URL
#
# For each service, in order: the URL already in the environment when it answers; the
# shared server on its default port (127.0.0.1:5432 / 127.0.0.1:6379); otherwise a
# private, throwaway server on a free port in a temporary directory, installed with
# apt-get first when its binaries are missing. SERVICES_FORCE_PRIVATE=1 skips the first
# two steps (tests of this script, or isolation from a shared server).
# Messages go to stderr; a URL is never printed, since it may carry a password.
#
# A private Postgres runs, like Debian's clusters (and so the shared server), with ssl = on and
# a freshly generated self-signed certificate: clients that insist on verified TLS (Spin, for
# every sslmode but disable) fail against it as they do against the shared server, so what the
# tests see does not depend on which Postgres they got. Test URLs say sslmode=disable.

set -euo pipefail

# What this shell started; kept when the file is sourced again, so stop_services still knows.
SERVICES_PG_DIR=${SERVICES_PG_DIR:-}        # temp dir of the private Postgres (data/, socket, log)
SERVICES_PG_BIN=${SERVICES_PG_BIN:-}
SERVICES_REDIS_DIR=${SERVICES_REDIS_DIR:-}  # temp dir of the private Redis (pid file, log)
SERVICES_REDIS_PORT=${SERVICES_REDIS_PORT:-}
SERVICES_APT_UPDATED=${SERVICES_APT_UPDATED:-}

services_log() {
    echo "services: $*" >&2
}

services_forced_private() {
    [[ "${SERVICES_FORCE_PRIVATE:-0}" == 1 ]]
}

# Installs Debian packages, running `apt-get update` once per shell.
services_apt_install() {
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            services_log "need root (or passwordless sudo) to apt-get install $*"
            return 1
        fi
    fi
    if [[ -z "$SERVICES_APT_UPDATED" ]]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        SERVICES_APT_UPDATED=1
    fi
    services_log "installing $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Waits until URL answers 200 while the process PID lives, for at most
# TIMEOUT seconds; otherwise says why, shows the end of LOG (that process's
# output) and fails.
# Serves the app with scripts/run.sh in the background, on LISTEN ($1), on the
# servers found or started above (DATABASE_URL, REDIS_URL), its output in
# $2/app.log and its components' logs in $2/logs; its pid in services_app_pid.
services_run_app() {
    local listen=$1 out=$2
    LISTEN=$listen SPIN_LOG_DIR="$PWD/$out/logs" SERVICES_FORCE_PRIVATE=0 \
        bash scripts/run.sh >"$out/app.log" 2>&1 &
    services_app_pid=$!
}

services_wait_for_200() {
    local url=$1 pid=$2 log=$3 timeout=$4
    local deadline=$((SECONDS + timeout))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url" || true)" == 200 ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            services_log "the process serving $url exited before answering 200; its output ends with:"
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            services_log "$url did not answer 200 within ${timeout}s; the output ends with:"
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        sleep 1
    done
}

# Prints a TCP port nobody listens on at 127.0.0.1.
services_free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    services_log "found no free port"
    return 1
}

# Runs a command as the `postgres` user when we are root: Postgres refuses to run as root.
services_as_postgres() {
    if [[ $EUID -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

# Prints the newest /usr/lib/postgresql/<version>/bin holding `$1`, or nothing.
services_pg_tool_dir() {
    local found=(/usr/lib/postgresql/*/bin/"$1")
    if [[ -x "${found[0]}" ]]; then
        printf '%s\n' "${found[@]%/*}" | sort -V | tail -n 1
    fi
}

# The Postgres server binaries' directory, installing Postgres if there is none.
services_pg_bin() {
    local bin
    bin=$(services_pg_tool_dir initdb)
    if [[ -z "$bin" ]]; then
        services_apt_install postgresql
        bin=$(services_pg_tool_dir initdb)
    fi
    if [[ -z "$bin" ]]; then
        services_log "no initdb found under /usr/lib/postgresql/*/bin"
        return 1
    fi
    echo "$bin"
}

services_pg_isready() {
    local cmd dir
    cmd=$(command -v pg_isready || true)
    if [[ -z "$cmd" ]]; then
        dir=$(services_pg_tool_dir pg_isready)
        [[ -n "$dir" ]] || return 1
        cmd=$dir/pg_isready
    fi
    "$cmd" -q -t 3 "$@"
}

# Succeeds when `psql` can run a query with this URL (the server answers *and* the role works).
services_pg_query_ok() {
    command -v psql >/dev/null && psql "$1" -qAtc 'SELECT 1' >/dev/null 2>&1
}

# Writes a fresh self-signed certificate and key into the data directory $1, as the server's
# user, key mode 0600 (Postgres refuses a key others can read): Debian's "snakeoil" set-up.
services_pg_self_signed_certificate() {
    local data=$1
    if ! command -v openssl >/dev/null; then
        services_apt_install openssl
    fi
    services_as_postgres openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=localhost \
        -keyout "$data/server.key" -out "$data/server.crt" >"$data/../openssl.log" 2>&1 || {
        services_log "openssl could not make the server certificate:"; cat "$data/../openssl.log" >&2; return 1
    }
    services_as_postgres chmod 600 "$data/server.key"
}

start_private_postgres() {
    local bin dir port attempt
    bin=$(services_pg_bin)
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/services-pg.XXXXXX")
    if [[ $EUID -eq 0 ]]; then
        chown postgres: "$dir"
    fi
    SERVICES_PG_DIR=$dir
    SERVICES_PG_BIN=$bin
    services_as_postgres "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
        services_log "initdb failed:"; cat "$dir/initdb.log" >&2; return 1
    }
    services_pg_self_signed_certificate "$dir/data"
    # A throwaway cluster: fsync off buys speed, and the socket lives in our own dir.
    for attempt in 1 2 3; do
        port=$(services_free_port)
        if services_as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c ssl=on -c ssl_cert_file=$dir/data/server.crt -c ssl_key_file=$dir/data/server.key" \
            start >/dev/null; then
            export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            services_log "started a private Postgres on 127.0.0.1:$port (data in $dir)"
            return 0
        fi
        services_log "Postgres did not start on port $port (attempt $attempt)"
    done
    cat "$dir/postgres.log" >&2 || true
    return 1
}

ensure_postgres() {
    if ! services_forced_private; then
        if [[ -n "${DATABASE_URL:-}" ]]; then
            if services_pg_isready -d "$DATABASE_URL"; then
                services_log "using the Postgres of DATABASE_URL"
                return 0
            fi
            services_log "the Postgres of DATABASE_URL does not answer"
        fi
        if services_pg_isready -h 127.0.0.1 -p 5432; then
            local role
            for role in postgres root; do
                if services_pg_query_ok "postgres://$role@127.0.0.1:5432/postgres"; then
                    export DATABASE_URL="postgres://$role@127.0.0.1:5432/postgres"
                    services_log "using the shared Postgres at 127.0.0.1:5432 as $role"
                    return 0
                fi
            done
            services_log "127.0.0.1:5432 answers but accepts neither role postgres nor root"
        fi
    fi
    start_private_postgres
}

services_redis_ping() {
    command -v redis-cli >/dev/null && [[ "$(redis-cli "$@" ping 2>/dev/null)" == PONG ]]
}

start_private_redis() {
    local dir port attempt
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        services_apt_install redis-server
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/services-redis.XXXXXX")
    SERVICES_REDIS_DIR=$dir
    for attempt in 1 2 3; do
        port=$(services_free_port)
        redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize yes \
            --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
        for _ in $(seq 1 50); do
            if services_redis_ping -h 127.0.0.1 -p "$port"; then
                SERVICES_REDIS_PORT=$port
                export REDIS_URL="redis://127.0.0.1:$port"
                services_log "started a private Redis on 127.0.0.1:$port"
                return 0
            fi
            sleep 0.1
        done
        services_log "Redis did not start on port $port (attempt $attempt)"
    done
    cat "$dir/redis.log" >&2 || true
    return 1
}

ensure_redis() {
    if ! services_forced_private; then
        if [[ -n "${REDIS_URL:-}" ]]; then
            if services_redis_ping -u "$REDIS_URL"; then
                services_log "using the Redis of REDIS_URL"
                return 0
            fi
            services_log "the Redis of REDIS_URL does not answer"
        fi
        if services_redis_ping -h 127.0.0.1 -p 6379; then
            export REDIS_URL="redis://127.0.0.1:6379"
            services_log "using the shared Redis at 127.0.0.1:6379"
            return 0
        fi
    fi
    start_private_redis
}

ensure_services() {
    ensure_postgres
    ensure_redis
}

# Stops and removes what ensure_services started, and nothing else. Safe to call twice
# and from an EXIT trap: it never fails.
# Points DATABASE_URL at a database NAME of its own on the server found or
# started (created when missing), with the URL Spin needs (scripts/urls.py:
# sslmode=disable on loopback).
services_use_database() {
    local name=$1
    if ! psql "$DATABASE_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        psql "$DATABASE_URL" -qc "CREATE DATABASE $name"
    fi
    DATABASE_URL=$(python3 scripts/urls.py spin-db-url "$DATABASE_URL" "$name")
    export DATABASE_URL
}

stop_services() {
    if [[ -n "$SERVICES_PG_DIR" ]]; then
        services_as_postgres "$SERVICES_PG_BIN/pg_ctl" -D "$SERVICES_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 ||
            services_log "could not stop the private Postgres in $SERVICES_PG_DIR"
        rm -rf "$SERVICES_PG_DIR"
        services_log "stopped the private Postgres"
        SERVICES_PG_DIR=""
    fi
    if [[ -n "$SERVICES_REDIS_DIR" ]]; then
        if [[ -n "$SERVICES_REDIS_PORT" ]]; then
            redis-cli -h 127.0.0.1 -p "$SERVICES_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        fi
        if [[ -f "$SERVICES_REDIS_DIR/redis.pid" ]]; then
            kill "$(cat "$SERVICES_REDIS_DIR/redis.pid")" 2>/dev/null || true
        fi
        rm -rf "$SERVICES_REDIS_DIR"
        services_log "stopped the private Redis"
        SERVICES_REDIS_DIR=""
        SERVICES_REDIS_PORT=""
    fi
    return 0
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "source this file: . scripts/services.sh; trap stop_services EXIT; ensure_services" >&2
    exit 2
fi

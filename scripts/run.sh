#!/usr/bin/env bash
# Runs the service on this machine, from a fresh clone:
#   1. Postgres and Redis: the ones in DATABASE_URL / REDIS_URL or on their
#      default ports (there, in a database `friendship`), else private
#      throwaway servers (installed when missing);
#   2. the schema (`migrator up`) and the agent catalogue (`migrator seed`);
#   3. the Spin components (`spin build`, or the same cargo build);
#   4. the scorer as its own supervised process (restarted whenever its Redis
#      trigger ends), with a doorbell ticker;
#   5. the HTTP routes on http://$LISTEN (default 127.0.0.1:3000).
# With a Spin CLI (SPIN_BIN, a path, or `spin` on PATH) it runs
# `spin build` and `spin up --runtime-config-file ...`; without one, the
# project's wasmtime host (tests/src/bin/spin-host.rs) serves the same
# components from the same spin.toml, and says so.
#
#   bash scripts/run.sh                 # Ctrl-C stops everything it started
# Environment: LISTEN, SPIN_BIN (the Spin CLI to use), SPIN_VARIABLE_JWT_SECRET
# (a random one is made and printed when unset), SPIN_VARIABLE_* for any other
# variable of spin.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# shellcheck source=scripts/services.sh
. scripts/services.sh

# Installed before anything starts: a failure at any later step still stops
# the private servers ensure_services may start.
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    stop_services
}
trap cleanup EXIT
trap 'exit 130' INT TERM

given_database_url=${DATABASE_URL:-}
ensure_services
if [[ -z "$given_database_url" ]]; then
    # Not told where: a database of its own on the server found or started.
    services_use_database friendship
fi

LISTEN=${LISTEN:-127.0.0.1:3000}
mkdir -p .run

echo "run: building the migrator (the first build takes a few minutes)" >&2
cargo build --locked --profile host -p migrator
echo "run: migrating and seeding the database" >&2
target/host/migrator up
target/host/migrator seed

echo "run: building the components" >&2
spin_cli=${SPIN_BIN:-$(command -v spin || true)}
if [[ -n "$spin_cli" ]]; then
    "$spin_cli" build
    runner=("$spin_cli" up)
    echo "run: serving with $("$spin_cli" --version) ($spin_cli)" >&2
else
    bash scripts/build-components.sh
    echo "run: building the wasmtime host (the first build takes several minutes)" >&2
    cargo build --locked --profile host -p e2e --bin spin-host
    runner=("$root/target/host/spin-host")
    echo "run: no Spin CLI on this machine: serving the same components with the project's wasmtime host" >&2
fi

# The key-value store lives in database 1 of the same Redis (see runtime-config.toml).
runtime_config=runtime-config.toml
kv_url=$(python3 scripts/urls.py redis-db "$REDIS_URL" 1)
if [[ "$kv_url" != "redis://127.0.0.1:6379/1" ]]; then
    runtime_config=.run/runtime-config.toml
    printf '[key_value_store.default]\ntype = "redis"\nurl = "%s"\n' "$kv_url" >"$runtime_config"
fi

# Spin verifies the certificate of any Postgres not reached with
# sslmode=disable; a loopback server gets that (scripts/urls.py).
SPIN_VARIABLE_DB_URL=${SPIN_VARIABLE_DB_URL:-$(python3 scripts/urls.py spin-db-url "$DATABASE_URL")}
SPIN_VARIABLE_REDIS_URL=${SPIN_VARIABLE_REDIS_URL:-$REDIS_URL}
SPIN_VARIABLE_DB_HOST=${SPIN_VARIABLE_DB_HOST:-$(python3 scripts/urls.py host-port "$SPIN_VARIABLE_DB_URL")}
SPIN_VARIABLE_REDIS_HOST=${SPIN_VARIABLE_REDIS_HOST:-$(python3 scripts/urls.py host-port "$SPIN_VARIABLE_REDIS_URL")}
# The key-value store's server, for /health's bounded probe: from the URL the
# runtime config above was written with.
SPIN_VARIABLE_KV_HOST=${SPIN_VARIABLE_KV_HOST:-$(python3 scripts/urls.py host-port "$kv_url")}
export SPIN_VARIABLE_DB_URL SPIN_VARIABLE_REDIS_URL SPIN_VARIABLE_DB_HOST SPIN_VARIABLE_REDIS_HOST SPIN_VARIABLE_KV_HOST
if [[ -z "${SPIN_VARIABLE_JWT_SECRET:-}" ]]; then
    SPIN_VARIABLE_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    export SPIN_VARIABLE_JWT_SECRET
    echo "run: generated a JWT secret for this run: $SPIN_VARIABLE_JWT_SECRET" >&2
    echo "run: mint a token with: SPIN_VARIABLE_JWT_SECRET=$SPIN_VARIABLE_JWT_SECRET python3 scripts/token.py --sub u-123 --role user" >&2
fi

bash scripts/scorer.sh "$runtime_config" "${runner[@]}" &
pids+=($!)

http_components=()
for dir in components/*/; do
    name=$(basename "$dir")
    [[ "$name" == scorer ]] || http_components+=(--component-id "$name")
done
"${runner[@]}" --runtime-config-file "$runtime_config" --listen "$LISTEN" "${http_components[@]}" &
pids+=($!)
# `serving` once it is true: the first answer of /health/live.
(
    until curl -fsS -m 2 -o /dev/null "http://$LISTEN/health/live" 2>/dev/null; do sleep 0.5; done
    echo "run: serving http://$LISTEN (Ctrl-C stops everything)" >&2
) &
pids+=($!)
wait -n "${pids[@]:0:2}"

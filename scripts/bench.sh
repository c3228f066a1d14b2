#!/usr/bin/env bash
# The benchmark: the service's throughput and latency as ratios of a
# hello-world component's, both served by the same server in the same run, on
# loopback only: the project's wasmtime host (spin-host, with Spin's execution
# profile), or `spin up` where the Spin CLI is installed (scripts/run.sh picks
# it then, and so does this script for the baseline). Absolute figures of
# this host do not match Spin's; the ratios are what the performance targets
# are about.
#
#   bash scripts/bench.sh          # from a fresh clone; Ctrl-C stops everything
#
# What it does:
#   1. Postgres and Redis as scripts/run.sh finds or starts them
#      (scripts/services.sh), with the database `friendship`;
#   2. builds spin-host, the migrator, the service's components and the
#      baseline component bench/hello (same release profile);
#   3. serves the baseline (bench/spin.toml) on a free port;
#   4. serves the app with scripts/run.sh (scorers included) on another free
#      port, and waits until /health/live answers and /health is 200;
#   5. runs scripts/load.sh with BASELINE_URL set: `GET /` on the baseline,
#      then trivial /health/live, cached suggest, uncached suggest and
#      conversation end, each flat out and in the open model at each rate of
#      RATES, and prints the table (req/s, % of the baseline, p50, p99);
#   6. stops everything it started, whatever happens.
# Time: (1 + number of RATES) x 5 runs of DURATION, plus start-up (the
# servers compile every component with Cranelift OptLevel::Speed) and, on a
# fresh clone, the builds: about 3 minutes at the defaults once built.
#
# Environment: DURATION (10s per run), RATES ("1000 500"), CONNECTIONS (16),
# P99_TARGET_MS (30), START_TIMEOUT (seconds to wait for the servers, 600),
# SPIN_VARIABLE_JWT_SECRET (a random one when unset). Server output (component
# logs included, as `spin up` copies them to stderr) and the result go to
# .run/bench/; component log files to .run/bench/logs (SPIN_LOG_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

DURATION=${DURATION:-10s}
RATES=${RATES:-1000 500}
START_TIMEOUT=${START_TIMEOUT:-600}
export DURATION RATES
out=.run/bench
mkdir -p "$out"
rm -rf "$out/logs" "$out/baseline-logs"

# shellcheck source=scripts/services.sh
. scripts/services.sh

baseline_pid=""
app_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # run.sh stops its HTTP host and scorers on TERM (its EXIT trap).
    [[ -n "$app_pid" ]] && kill -TERM "$app_pid" 2>/dev/null || true
    [[ -n "$baseline_pid" ]] && kill -TERM "$baseline_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    stop_services
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

given_database_url=${DATABASE_URL:-}
ensure_services
if [[ -z "$given_database_url" ]]; then
    # Not told where: a database of its own on the server found or started.
    services_use_database friendship
fi
if [[ -z "${SPIN_VARIABLE_JWT_SECRET:-}" ]]; then
    SPIN_VARIABLE_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
fi
export SPIN_VARIABLE_JWT_SECRET

log "building spin-host, the migrator, the components and the baseline (bench/hello)"
bash scripts/build-components.sh
cargo build --locked --target wasm32-wasip2 --release -q -p hello
cargo build --locked --profile host -q -p e2e --bin spin-host
cargo build --locked --profile host -q -p migrator

if command -v spin >/dev/null; then
    server="spin up ($(spin --version 2>/dev/null | head -n 1))"
    baseline_runner=(spin up)
else
    server="spin-host, Spin profile"
    baseline_runner=("$root/target/host/spin-host")
fi

baseline_listen=127.0.0.1:$(services_free_port)
app_listen=127.0.0.1:$(services_free_port)
while [[ "$app_listen" == "$baseline_listen" ]]; do app_listen=127.0.0.1:$(services_free_port); done

log "serving the baseline on http://$baseline_listen ($server)"
"${baseline_runner[@]}" --from bench/spin.toml --listen "$baseline_listen" \
    --log-dir "$out/baseline-logs" >"$out/baseline.log" 2>&1 &
baseline_pid=$!

log "serving the app on http://$app_listen (scripts/run.sh)"
LISTEN=$app_listen SPIN_LOG_DIR="$root/$out/logs" bash scripts/run.sh >"$out/app.log" 2>&1 &
app_pid=$!

services_wait_for_200 "http://$baseline_listen/" "$baseline_pid" "$out/baseline.log" "$START_TIMEOUT"
services_wait_for_200 "http://$app_listen/health/live" "$app_pid" "$out/app.log" "$START_TIMEOUT"
services_wait_for_200 "http://$app_listen/health" "$app_pid" "$out/app.log" "$START_TIMEOUT"
log "both answer; measuring"

{
    echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + work tree changes')"
    echo "bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "bench: server for both: $server"
    grep -h -m 1 '^spin-host:' "$out/baseline.log" "$out/app.log" | sed 's/^/bench:   /' || true
    BASE_URL=http://$app_listen BASELINE_URL=http://$baseline_listen bash scripts/load.sh
    echo "bench: done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out/result.txt"

#!/usr/bin/env bash
# The benchmark: the service's throughput and latency beside a hello-world
# component's, both served by the same server in the same run, and beside
# the original plan's stack (the FastAPI peers) when told where they are,
# on loopback only. The server is the real Spin when one is named (SPIN_BIN,
# a path, or `spin` on PATH; scripts/run.sh honours the same), otherwise the
# project's wasmtime host (spin-host, with Spin's execution profile); the
# output says which. Absolute figures of the host do not match Spin's: the
# real Spin's are what users get.
#
#   bash scripts/bench.sh                                   # from a fresh clone; Ctrl-C stops everything
#   SPIN_BIN=~/.cache/real-spin/4.0.2/spin PEERS_DIR=../shared/peers bash scripts/bench.sh
#
# What it does:
#   1. Postgres and Redis as scripts/run.sh finds or starts them
#      (scripts/services.sh), with the database `friendship`;
#   2. builds the migrator, the service's components and the baseline
#      component bench/hello (same release profile), and spin-host when no
#      Spin CLI is named;
#   3. serves the baseline (bench/spin.toml) on a free port;
#   4. serves the app with scripts/run.sh (scorers included) on another free
#      port, and waits until /health/live answers and /health is 200;
#   5. with PEERS_DIR (the folder of fastapi_suggest.py and fastapi_end.py,
#      which stay there): installs their packages, pinned in
#      scripts/peers-requirements.txt, into the venv .run/peers-venv (once),
#      and serves each with two uvicorn workers (uvloop, httptools) on free
#      ports: the suggest peer reads the key-value database of the same Redis
#      (the app's own cached record), the end peer writes its own table in
#      the same Postgres database;
#   6. runs scripts/load.sh with BASELINE_URL (and the peers' URLs, and the
#      scorers' process for pausing them): `GET /` on the baseline, then
#      trivial /health/live, cached suggest, uncached suggest and conversation
#      end (scorers running, then stopped: SIGSTOP to scorer.sh's process
#      tree, SIGCONT after), each flat out and in the open model at each rate
#      of RATES, each peer scenario right after the app's; prints the table
#      (req/s, % of the baseline, p50, p99), app / peer per scenario, and how
#      long the scorers took to process the events of each run;
#   7. stops everything it started, whatever happens.
# Time: (1 + number of RATES) x 6 runs of DURATION (x 9 with the peers),
# plus start-up (the servers compile every component with Cranelift
# OptLevel::Speed; the real Spin caches that) and, on a fresh clone, the
# builds: about 4 minutes at the defaults once built, 6 with the peers.
#
# Environment: SPIN_BIN, PEERS_DIR, DURATION (10s per run), RATES ("1000
# 500"), CONNECTIONS (16), P99_TARGET_MS (30), START_TIMEOUT (seconds to wait
# for the servers, 600), SPIN_VARIABLE_JWT_SECRET (a random one when unset).
# Server output (component logs included, as `spin up` copies them to
# stderr) and the result go to .run/bench/; component log files to
# .run/bench/logs (SPIN_LOG_DIR).
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
peer_pids=()
scorers_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Scorers paused by load.sh when it was interrupted go on, to be stopped.
    [[ -n "$scorers_pid" ]] && SCORERS_PID=$scorers_pid bash scripts/load.sh --resume-scorers 2>/dev/null || true
    # run.sh stops its HTTP host and scorers on TERM (its EXIT trap).
    [[ -n "$app_pid" ]] && kill -TERM "$app_pid" 2>/dev/null || true
    for pid in "${peer_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
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


spin_cli=${SPIN_BIN:-$(command -v spin || true)}
if [[ -n "$spin_cli" ]]; then
    spin_cli=$(realpath "$spin_cli")
    server="the real Spin: spin up ($("$spin_cli" --version 2>/dev/null | head -n 1), $spin_cli)"
    baseline_runner=("$spin_cli" up)
    export SPIN_BIN=$spin_cli
else
    server="spin-host, Spin profile (no Spin CLI: set SPIN_BIN or put spin on PATH for the real one)"
    baseline_runner=("$root/target/host/spin-host")
fi
log "server for both: $server"

log "building the migrator, the components and the baseline (bench/hello)$([[ -n "$spin_cli" ]] || echo ', and spin-host')"
bash scripts/build-components.sh
cargo build --locked --target wasm32-wasip2 --release -q -p hello
[[ -n "$spin_cli" ]] || cargo build --locked --profile host -q -p e2e --bin spin-host
cargo build --locked --profile host -q -p migrator

baseline_listen=127.0.0.1:$(services_free_port)
app_listen=127.0.0.1:$(services_free_port)
while [[ "$app_listen" == "$baseline_listen" ]]; do app_listen=127.0.0.1:$(services_free_port); done

log "serving the baseline on http://$baseline_listen ($server)"
"${baseline_runner[@]}" --from bench/spin.toml --listen "$baseline_listen" \
    --log-dir "$out/baseline-logs" >"$out/baseline.log" 2>&1 &
baseline_pid=$!

log "serving the app on http://$app_listen (scripts/run.sh)"
# The servers found or started above (run.sh would start private ones of its
# own under SERVICES_FORCE_PRIVATE=1): the peers and load.sh use the same.
services_run_app "$app_listen" "$out"
app_pid=$services_app_pid

peer_env=()
if [[ -n "${PEERS_DIR:-}" ]]; then
    PEERS_DIR=$(realpath "$PEERS_DIR")
    for file in fastapi_suggest.py fastapi_end.py; do
        [[ -f "$PEERS_DIR/$file" ]] || { log "PEERS_DIR=$PEERS_DIR has no $file"; exit 2; }
    done
    venv=.run/peers-venv
    pins=$(sha256sum scripts/peers-requirements.txt | cut -d' ' -f1)
    if [[ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ]]; then
        log "installing the peers' packages (scripts/peers-requirements.txt) into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q -r scripts/peers-requirements.txt >&2
        echo "$pins" >"$venv/.pins"
    fi
    peer_suggest_listen=$(services_free_port)
    peer_end_listen=$(services_free_port)
    while [[ "$peer_end_listen" == "$peer_suggest_listen" ]]; do peer_end_listen=$(services_free_port); done
    uvicorn=("$root/$venv/bin/uvicorn" --app-dir "$PEERS_DIR" --workers 2 --loop uvloop --http httptools
        --no-access-log --log-level warning --host 127.0.0.1)
    log "serving the FastAPI peers from $PEERS_DIR on ports $peer_suggest_listen (suggest) and $peer_end_listen (end)"
    JWT_SECRET=$SPIN_VARIABLE_JWT_SECRET REDIS_URL=$(python3 scripts/urls.py redis-db "$REDIS_URL" 1) \
        "${uvicorn[@]}" --port "$peer_suggest_listen" fastapi_suggest:app >"$out/peer-suggest.log" 2>&1 &
    peer_pids+=($!)
    JWT_SECRET=$SPIN_VARIABLE_JWT_SECRET REDIS_URL=$(python3 scripts/urls.py redis-db "$REDIS_URL" 0) \
        DATABASE_URL=$DATABASE_URL "${uvicorn[@]}" --port "$peer_end_listen" fastapi_end:app >"$out/peer-end.log" 2>&1 &
    peer_pids+=($!)
    peer_env=(PEER_SUGGEST_URL="http://127.0.0.1:$peer_suggest_listen" PEER_END_URL="http://127.0.0.1:$peer_end_listen"
        PEER_KV_REDIS_URL="$(python3 scripts/urls.py redis-db "$REDIS_URL" 1)")
fi

services_wait_for_200 "http://$baseline_listen/" "$baseline_pid" "$out/baseline.log" "$START_TIMEOUT"
services_wait_for_200 "http://$app_listen/health/live" "$app_pid" "$out/app.log" "$START_TIMEOUT"
services_wait_for_200 "http://$app_listen/health" "$app_pid" "$out/app.log" "$START_TIMEOUT"
if [[ -n "${PEERS_DIR:-}" ]]; then
    services_wait_for_200 "http://127.0.0.1:$peer_suggest_listen/health/live" "${peer_pids[0]}" "$out/peer-suggest.log" "$START_TIMEOUT"
    services_wait_for_200 "http://127.0.0.1:$peer_end_listen/health/live" "${peer_pids[1]}" "$out/peer-end.log" "$START_TIMEOUT"
fi
# The scorers' supervisor (scripts/scorer.sh, run.sh's child): load.sh pauses
# its process tree for the conversation end with the scorers stopped.
scorers_pid=$(pgrep -P "$app_pid" -f 'scripts/scorer.sh' | head -n 1 || true)
[[ -n "$scorers_pid" ]] || log "found no scorer.sh under run.sh: the conversation end runs with the scorers only"
log "all answer; measuring"

{
    echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + work tree changes')"
    echo "bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "bench: server for both: $server"
    [[ -z "${PEERS_DIR:-}" ]] || echo "bench: peers: FastAPI from $PEERS_DIR, 2 uvicorn workers each ($("$root/.run/peers-venv/bin/python" -c 'import fastapi, uvicorn; print(f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}")'))"
    grep -h -m 1 '^spin-host:' "$out/baseline.log" "$out/app.log" | sed 's/^/bench:   /' || true
    env "${peer_env[@]}" SCORERS_PID="$scorers_pid" EVENTS_DATABASE_URL="$DATABASE_URL" \
        BASE_URL=http://$app_listen BASELINE_URL=http://$baseline_listen bash scripts/load.sh
    echo "bench: done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out/result.txt"

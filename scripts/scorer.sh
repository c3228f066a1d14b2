#!/usr/bin/env bash
# Runs the scorer as its own process, supervised: Spin's Redis trigger ends
# (and `spin up` exits) when its Redis connection drops, so the scorer is
# restarted until this script is stopped; the HTTP routes, in another process,
# never go down with it. A ticker rings the scorer's doorbell every
# TICK_SECONDS (default 2) so that retries come due and events whose
# notification was lost are scored without waiting for new traffic.
# SCORERS (default 2) processes run side by side: each receives every
# doorbell, and `FOR UPDATE SKIP LOCKED` has them share the due events.
#
#   bash scripts/scorer.sh RUNTIME_CONFIG RUNNER...   (RUNNER: `spin up` or the wasmtime host)
# Needs SPIN_VARIABLE_REDIS_URL and the other variables in the environment.
set -euo pipefail
runtime_config=$1
shift
runner=("$@")
channel=${SPIN_VARIABLE_EVENTS_CHANNEL:-conversation-events}
# This ticker rings the scorers, not the app's own (spin.toml, self_tick_ms).
export SPIN_VARIABLE_SELF_TICK_MS=${SPIN_VARIABLE_SELF_TICK_MS:-0}
tick_seconds=${TICK_SECONDS:-2}
scorers=${SCORERS:-2}

ticker() {
    while true; do
        sleep "$tick_seconds"
        redis-cli -u "$SPIN_VARIABLE_REDIS_URL" PUBLISH "$channel" '{"kind":"tick"}' >/dev/null 2>&1 || true
    done
}

# One scorer process, started again whenever it exits; stopping the loop
# stops its process too.
supervise() {
    local child="" stopping=""
    trap 'stopping=1; [[ -n "$child" ]] && kill "$child" 2>/dev/null; exit 0' TERM INT
    while true; do
        "${runner[@]}" --runtime-config-file "$runtime_config" --component-id scorer &
        child=$!
        status=0
        wait "$child" || status=$?
        [[ -n "$stopping" ]] && exit 0
        # Ctrl-C reaches the scorer before this loop is told to stop (a
        # background job ignores SIGINT): wait a second, in which a stop ends
        # the loop quietly, before saying anything.
        sleep 1
        echo "scorer $1: exited with status $status; restarted" >&2
    done
}

trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
trap 'exit 0' TERM INT
if command -v redis-cli >/dev/null; then
    ticker &
else
    echo "scorer: redis-cli not found (Debian package redis-tools): no ticker; retries wait for new events or a redrive" >&2
fi
for n in $(seq 1 "$scorers"); do
    supervise "$n" &
done
wait

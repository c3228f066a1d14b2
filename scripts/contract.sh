#!/usr/bin/env bash
# The contract check: serves the app as scripts/run.sh does and fuzzes it
# from the openapi.json it serves itself, with schemathesis: every phase
# (examples, coverage, fuzzing, stateful), every check, a fixed seed and a
# time bound. It fails on any failure: a 5xx, an answer the document does not
# describe, a request the document forbids but the service accepts, or one
# the document allows but the service refuses.
#
#   bash scripts/contract.sh       # from a fresh clone; Ctrl-C stops everything
#
# What it does:
#   1. Postgres and Redis (scripts/services.sh): private, throwaway servers
#      by default, so every run starts from an empty database and touches no
#      shared state; SERVICES_FORCE_PRIVATE=0 uses the ones run.sh would
#      find instead, in a database `friendship_contract` made afresh;
#   2. schemathesis, pinned, in the virtualenv .run/contract-venv (pip);
#   3. builds what run.sh serves (the first build takes several minutes),
#      then serves the app with scripts/run.sh (migration, seed, scorers) on
#      a free port, and waits until /health/live answers and /health is 200;
#   4. records one conversation end, for the event lookup to find;
#   5. runs schemathesis against http://<that port>/openapi.json with an admin
#      token (scripts/token.py) and the configuration written below;
#   6. stops everything it started, whatever happens.
# Its output, the app's log and a JUnit report go to .run/contract/.
#
# Environment: CONTRACT_MAX_TIME (seconds of testing, 240; the whole run
# takes about 20 s more once built), CONTRACT_SEED (20261122),
# CONTRACT_WORKERS (1: schemathesis's workers are threads, and CPython 3.11,
# Debian 12's, can fail a thread's regex-to-AST work with a spurious
# "AST constructor recursion depth mismatch", python/cpython#106905),
# START_TIMEOUT (seconds to wait for the app, 300), SPIN_BIN (the Spin CLI
# run.sh serves with; the spin on PATH, else the project's host, when unset),
# SPIN_VARIABLE_JWT_SECRET (a random one when unset). Fuzzing and stateful
# testing go on until the time is spent, so a seed fixes the cases drawn but
# a faster machine draws more of them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

SCHEMATHESIS_VERSION=4.32.5
# The generator behind it, pinned too: a seed then names the same cases.
HYPOTHESIS_VERSION=6.170.27
CONTRACT_MAX_TIME=${CONTRACT_MAX_TIME:-240}
CONTRACT_SEED=${CONTRACT_SEED:-20261122}
CONTRACT_WORKERS=${CONTRACT_WORKERS:-1}
START_TIMEOUT=${START_TIMEOUT:-300}
out=.run/contract
venv=.run/contract-venv
mkdir -p "$out"
rm -rf "$out/logs" "$out/report"

log() { echo "contract: $*" >&2; }

# shellcheck source=scripts/services.sh
. scripts/services.sh

app_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # run.sh stops its HTTP host and scorers on TERM (its EXIT trap).
    if [[ -n "$app_pid" ]]; then
        kill -TERM "$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
    fi
    stop_services
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Postgres and Redis.
export SERVICES_FORCE_PRIVATE=${SERVICES_FORCE_PRIVATE:-1}
ensure_services
if [[ "$SERVICES_FORCE_PRIVATE" != 1 ]]; then
    psql "$DATABASE_URL" -qc 'DROP DATABASE IF EXISTS friendship_contract WITH (FORCE)'
fi
services_use_database friendship_contract

# 2. Schemathesis.
if [[ "$("$venv/bin/schemathesis" --version 2>/dev/null || true)" != *" $SCHEMATHESIS_VERSION" ]]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
fi

# 3. The app. Built first, so that START_TIMEOUT only counts the start.
log "building the components, the migrator and the wasmtime host"
bash scripts/build-components.sh
cargo build --locked --profile host -q -p migrator
# run.sh serves with SPIN_BIN, else the spin on PATH, else the wasmtime host.
if [[ -z "${SPIN_BIN:-}" ]] && ! command -v spin >/dev/null; then
    cargo build --locked --profile host -q -p e2e --bin spin-host
fi
if [[ -z "${SPIN_VARIABLE_JWT_SECRET:-}" ]]; then
    SPIN_VARIABLE_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
fi
export SPIN_VARIABLE_JWT_SECRET
# GET /metrics is served only with a metrics token (a 404 otherwise).
if [[ -z "${SPIN_VARIABLE_METRICS_TOKEN:-}" ]]; then
    SPIN_VARIABLE_METRICS_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
fi
export SPIN_VARIABLE_METRICS_TOKEN
listen=127.0.0.1:$(services_free_port)
base=http://$listen
log "serving the app on $base (scripts/run.sh; its output in $out/app.log)"
# run.sh finds the services above through DATABASE_URL and REDIS_URL.
services_run_app "$listen" "$out"
app_pid=$services_app_pid

services_wait_for_200 "$base/health/live" "$app_pid" "$out/app.log" "$START_TIMEOUT"
services_wait_for_200 "$base/health" "$app_pid" "$out/app.log" "$START_TIMEOUT"

token=$(python3 scripts/token.py --sub contract-admin --role admin --ttl 3600)

# 4. One recorded event: any other UUID is a 404.
CONTRACT_EVENT_ID=$(curl -fsS -X POST "$base/api/v1/conversations/end" \
    -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"user_id": "contract-user", "conversation_id": "contract-1", "metadata":
         {"total_turns": 4, "user_initiated_questions": 1, "emotion": "happy",
          "topics": [{"name": "music", "turns": 2, "user_questions": 1}]}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["processing_id"])')
export CONTRACT_EVENT_ID

# 5. Schemathesis. Every check is on unless this file turns it off (none is
# named on the command line, which would override it), and each exception
# says why.
cat >"$out/schemathesis.toml" <<'TOML'
# Written by scripts/contract.sh.

# Each run stands alone: nothing an earlier run found (with another seed or
# another document) is replayed, and nothing is written outside .run/.
[cache]
enabled = false

[generation]
database = "none"

# A false positive by design: DELETE /api/v1/agent-mappings/{id} is a soft
# delete. The mapping stays, inactive, and GET still answers it with 200
# (`is_active: false`); a PUT reactivates it. openapi.json says so. The
# use-after-free check expects a 404 after a DELETE, so it is off for that
# GET alone.
[[operations]]
include-name = "GET /api/v1/agent-mappings/{id}"
checks.use_after_free.enabled = false

# Every UUID but a recorded event's is a 404, so generated ids would never
# reach this lookup's 200 answer (and schemathesis warns of missing test
# data): it reads the event recorded just before the run. The path
# parameter's other values (other UUID forms, unknown UUIDs, non-UUIDs) are
# covered by the end-to-end suite (routes.rs, errors.rs).
[[operations]]
include-name = "GET /api/v1/conversations/{processing_id}"
parameters = { processing_id = "${CONTRACT_EVENT_ID}" }

# The scrape takes the metrics token (the Spin variable metrics_token), not
# a JWT.
[[operations]]
include-name = "GET /metrics"
headers = { Authorization = "Bearer ${SPIN_VARIABLE_METRICS_TOKEN}" }
TOML

# Hypothesis keeps its caches (Unicode tables) under .run/ too, not in the tree.
export HYPOTHESIS_STORAGE_DIRECTORY=$root/$out/hypothesis
log "schemathesis $SCHEMATHESIS_VERSION against $base/openapi.json: seed $CONTRACT_SEED, ${CONTRACT_MAX_TIME}s, $CONTRACT_WORKERS workers"
status=0
"$venv/bin/schemathesis" --config-file "$out/schemathesis.toml" run "$base/openapi.json" \
    --phases examples,coverage,fuzzing,stateful \
    --seed "$CONTRACT_SEED" \
    --max-time "$CONTRACT_MAX_TIME" \
    --workers "$CONTRACT_WORKERS" \
    --header "Authorization: Bearer $token" \
    --request-timeout 10 \
    --report junit --report-dir "$out/report" \
    --no-color || status=$?
if ((status != 0)); then
    log "failed (schemathesis exit status $status); the app's log is $out/app.log"
else
    log "passed"
fi
exit "$status"

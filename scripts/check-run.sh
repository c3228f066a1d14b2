#!/usr/bin/env bash
# The README's run command, tested as a user on a fresh machine meets it:
# `bash scripts/run.sh` with private Postgres and Redis (SERVICES_FORCE_PRIVATE=1,
# as where none runs), on a free port. It must:
#   - say `serving` and then answer `GET /health` 200 within 5 s;
#   - serve a suggestion from the key-value cache on the second call (the
#     runtime config and `kv_host` point at the private Redis, not at a
#     database number of it);
#   - stop its servers when told to stop (TERM, as Ctrl-C).
# scripts/test.sh runs it after the test suite; bounded by START_TIMEOUT
# (seconds for the builds and the start, default 900).
#
#   bash scripts/check-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/services.sh
. scripts/services.sh

START_TIMEOUT=${START_TIMEOUT:-900}
out=$(mktemp -d)
run_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
        kill -TERM "$run_pid" 2>/dev/null || true
        wait "$run_pid" 2>/dev/null || true
    fi
    if ((status != 0)); then
        echo "check-run: scripts/run.sh said:" >&2
        tail -n 40 "$out/run.log" >&2 || true
    fi
    rm -rf "$out"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "check-run: FAILED: $*" >&2
    exit 1
}

listen=127.0.0.1:$(services_free_port)
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
echo "check-run: SERVICES_FORCE_PRIVATE=1 LISTEN=$listen bash scripts/run.sh" >&2
SERVICES_FORCE_PRIVATE=1 LISTEN=$listen SPIN_VARIABLE_JWT_SECRET=$secret \
    bash scripts/run.sh >"$out/run.log" 2>&1 &
run_pid=$!

deadline=$((SECONDS + START_TIMEOUT))
until grep -q "^run: serving http://$listen" "$out/run.log"; do
    kill -0 "$run_pid" 2>/dev/null || fail "run.sh exited before serving"
    ((SECONDS < deadline)) || fail "run.sh did not say serving within ${START_TIMEOUT}s"
    sleep 1
done
grep -q "started a private Postgres" "$out/run.log" ||
    fail "run.sh did not start a private Postgres"

started=$SECONDS
health=$(curl -s -o "$out/health.json" -w '%{http_code}' --max-time 10 "http://$listen/health" || true)
took=$((SECONDS - started))
[[ "$health" == 200 ]] || fail "GET /health answered $health: $(cat "$out/health.json" 2>/dev/null)"
((took <= 5)) || fail "GET /health took ${took}s"
echo "check-run: GET /health 200 in ${took}s" >&2

token=$(SPIN_VARIABLE_JWT_SECRET=$secret python3 scripts/token.py --sub check-run --role service --ttl 300)
suggest() {
    curl -s --max-time 10 -X POST "http://$listen/api/v1/activities/suggest" \
        -H "authorization: Bearer $token" -H 'content-type: application/json' \
        -d '{"user_id":"check-run-user"}'
}
first=$(suggest)
second=$(suggest)
python3 - "$first" "$second" <<'EOF' || fail "suggest did not come from the cache the second time"
import json, sys
first, second = (json.loads(s) for s in sys.argv[1:3])
assert first["cached"] is False, first
assert second["cached"] is True, second
EOF
redis_port=$(sed -n 's/.*started a private Redis on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out/run.log" | head -n 1)
[[ -n "$redis_port" ]] || fail "run.sh did not start a private Redis"
# The user's slot of cache_slots (scripts/cache_slot.py computes it as the service does).
key=$(python3 scripts/cache_slot.py check-run-user)
redis-cli -p "$redis_port" -n 1 get "$key" | grep -q '"user_id":"check-run-user"' ||
    fail "the cached candidates are not in database 1 of the private Redis"
echo "check-run: the second suggest came from the key-value cache, kept in the private Redis" >&2

kill -TERM "$run_pid"
for _ in $(seq 1 60); do
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.5
done
kill -0 "$run_pid" 2>/dev/null && fail "run.sh still runs 30 s after TERM"
wait "$run_pid" 2>/dev/null || true
run_pid=""
grep -q "stopped the private Postgres" "$out/run.log" || fail "the private Postgres was not stopped"
grep -q "stopped the private Redis" "$out/run.log" || fail "the private Redis was not stopped"
echo "check-run: ok (serving, healthy, cached, and stopped its private servers)" >&2

#!/usr/bin/env bash
# Drives the running service on loopback with oha (crates.io; installed on
# first use) and prints requests/s, p50 and p99 for: a trivial route (the
# baseline), a cached suggest, an uncached suggest and a conversation end.
#
#   bash scripts/run.sh &                      # the service, in another shell
#   SPIN_VARIABLE_JWT_SECRET=... bash scripts/load.sh
#
# Two runs per scenario, each bounded in time (DURATION, default 10s):
#   throughput  closed model, CONNECTIONS (default 16) connections flat out;
#   latency     open model: a steady RATE (default 1000) requests/s with
#               oha's latency correction (no coordinated omission).
# BASE_URL defaults to http://127.0.0.1:3000; only loopback is allowed.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_URL=${BASE_URL:-http://127.0.0.1:3000}
DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
CONNECTIONS=${CONNECTIONS:-16}
case "$BASE_URL" in
    http://127.*|http://localhost*|http://\[::1\]*) ;;
    *) echo "load: BASE_URL must be a loopback address, not $BASE_URL" >&2; exit 2 ;;
esac
: "${SPIN_VARIABLE_JWT_SECRET:?set SPIN_VARIABLE_JWT_SECRET to the jwt_secret of the service}"

if ! command -v oha >/dev/null; then
    echo "load: installing oha from crates.io" >&2
    cargo install --locked oha --version 1.16.0 >&2
fi
if ! curl -fsS "$BASE_URL/health/live" >/dev/null; then
    echo "load: nothing answers at $BASE_URL (start it with bash scripts/run.sh)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
service=$(python3 scripts/token.py --sub load-generator --role service --ttl 3600)
run_id=$(date +%s)

# Bodies for the scenarios that need a new user or conversation per request.
lines=$((RATE * 40 + 200000))
python3 - "$work" "$run_id" "$lines" <<'PY'
import sys
work, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(f"{work}/uncached.jsonl", "w") as f:
    for i in range(n):
        f.write('{"user_id":"load-miss-%s-%d"}\n' % (run_id, i))
with open(f"{work}/conversations.jsonl", "w") as f:
    for i in range(n):
        f.write('{"user_id":"load-user-%s-%d","conversation_id":"load-%s-%d","metadata":'
                '{"total_turns":12,"user_initiated_questions":2,"emotion":"happy",'
                '"new_memories_count":1,"topics":[{"name":"music","turns":8,"user_questions":1}]}}\n'
                % (run_id, i % 1000, run_id, i))
PY
cached_user="load-hit-$run_id"
curl -fsS -X POST "$BASE_URL/api/v1/activities/suggest" -H "authorization: Bearer $service" \
    -H 'content-type: application/json' -d "{\"user_id\":\"$cached_user\"}" >/dev/null

summarise() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
scenario, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
total = sum(codes.values()) or 1
print(f"{scenario:<18} {mode:<10} {s['requestsPerSec']:>9.0f} req/s   p50 {p['p50'] * 1000:>7.2f} ms   "
      f"p99 {p['p99'] * 1000:>7.2f} ms   2xx {100 * ok / total:5.1f}%   codes {codes}")
PY
}

scenario() {
    local name=$1 method=$2 path=$3
    shift 3
    oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" -m "$method" \
        -H "authorization: Bearer $service" -T application/json "$@" "$BASE_URL$path" >"$work/$name-throughput.json"
    summarise "$name" throughput "$work/$name-throughput.json"
    oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" -q "$RATE" --latency-correction -m "$method" \
        -H "authorization: Bearer $service" -T application/json "$@" "$BASE_URL$path" >"$work/$name-latency.json"
    summarise "$name" "@${RATE}/s" "$work/$name-latency.json"
}

echo "load: $BASE_URL, $DURATION per run, $CONNECTIONS connections, open-model rate $RATE/s"
scenario trivial GET /health/live
scenario cached-suggest POST /api/v1/activities/suggest -d "{\"user_id\":\"$cached_user\"}"
scenario uncached-suggest POST /api/v1/activities/suggest -Z "$work/uncached.jsonl"
scenario conversation-end POST /api/v1/conversations/end -Z "$work/conversations.jsonl"

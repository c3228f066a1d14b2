#!/usr/bin/env bash
# Drives the running service on loopback with oha (crates.io; installed on
# first use) and prints requests/s, p50 and p99 for: a trivial route, a
# cached suggest, an uncached suggest and a conversation end.
#
#   bash scripts/run.sh &                      # the service, in another shell
#   SPIN_VARIABLE_JWT_SECRET=... bash scripts/load.sh
#
# Runs per scenario, each bounded in time (DURATION, default 10s):
#   flat-out    closed model, CONNECTIONS (default 16) connections flat out;
#   @RATE/s     open model: a steady rate of requests/s with oha's latency
#               correction (no coordinated omission), once for each rate of
#               RATES (default "$RATE", RATE defaulting to 1000).
# With BASELINE_URL set (a hello-world component served by the same server:
# scripts/bench.sh does all of it), the baseline scenario `GET $BASELINE_URL/`
# runs first, the same way, and every figure of req/s is also given as a
# percentage of the baseline's in the same mode. The last table answers, per
# rate, whether uncached suggest and conversation end hold it with
# p99 <= P99_TARGET_MS (default 30).
# With PEER_SUGGEST_URL and PEER_END_URL (the FastAPI peers of
# ../shared/peers, served by scripts/bench.sh with PEERS_DIR), each peer
# scenario runs right after the app's, the same way (trivial: the suggest
# peer's /health/live; cached suggest: the same user, whose record the app
# cached; conversation end: fresh conversation ids), and a table gives
# app / peer per scenario and run.
# With SCORERS_PID (the process of scripts/scorer.sh), the conversation end
# runs a second time with the scorers stopped (SIGSTOP to that process and
# every descendant, SIGCONT after): the same work as the end peer, which
# scores nothing. `load.sh --resume-scorers` only sends the SIGCONT.
# With EVENTS_DATABASE_URL (the app's database), after each conversation-end
# run with the scorers running it waits (at most 60 s) for that run's events
# and prints how long after its 202 the slowest event was processed.
# BASE_URL defaults to http://127.0.0.1:3000; only loopback is allowed.
set -euo pipefail
cd "$(dirname "$0")/.."

SCORERS_PID=${SCORERS_PID:-}
# The scorers' process tree: SCORERS_PID and its descendants, parents first.
scorer_tree() {
    local pid
    echo "$1"
    for pid in $(pgrep -P "$1" || true); do scorer_tree "$pid"; done
}
# Sends SIG to the tree, parents first, twice over (a child a supervisor
# started meanwhile is caught on the second pass).
signal_scorers() {
    local pass pid
    [[ -n "$SCORERS_PID" ]] || return 0
    for pass in 1 2; do
        for pid in $(scorer_tree "$SCORERS_PID"); do kill -"$1" "$pid" 2>/dev/null || true; done
    done
}
if [[ "${1:-}" == --resume-scorers ]]; then
    signal_scorers CONT
    exit 0
fi

BASE_URL=${BASE_URL:-http://127.0.0.1:3000}
BASELINE_URL=${BASELINE_URL:-}
DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
RATES=${RATES:-$RATE}
CONNECTIONS=${CONNECTIONS:-16}
P99_TARGET_MS=${P99_TARGET_MS:-30}
loopback() {
    case "$2" in
        http://127.*|http://localhost*|http://\[::1\]*) ;;
        *) echo "load: $1 must be a loopback address, not $2" >&2; exit 2 ;;
    esac
}
loopback BASE_URL "$BASE_URL"
[[ -z "$BASELINE_URL" ]] || loopback BASELINE_URL "$BASELINE_URL"
PEER_SUGGEST_URL=${PEER_SUGGEST_URL:-}
PEER_END_URL=${PEER_END_URL:-}
EVENTS_DATABASE_URL=${EVENTS_DATABASE_URL:-}
[[ -z "$PEER_SUGGEST_URL" ]] || loopback PEER_SUGGEST_URL "$PEER_SUGGEST_URL"
[[ -z "$PEER_END_URL" ]] || loopback PEER_END_URL "$PEER_END_URL"
for rate in $RATES; do
    [[ "$rate" =~ ^[1-9][0-9]*$ ]] || { echo "load: RATES must be positive integers, not '$RATES'" >&2; exit 2; }
done
: "${SPIN_VARIABLE_JWT_SECRET:?set SPIN_VARIABLE_JWT_SECRET to the jwt_secret of the service}"

if ! command -v oha >/dev/null; then
    echo "load: installing oha from crates.io" >&2
    cargo install --locked oha --version 1.16.0 >&2
fi
if ! curl -fsS "$BASE_URL/health/live" >/dev/null; then
    echo "load: nothing answers at $BASE_URL (start it with bash scripts/run.sh)" >&2
    exit 1
fi
if [[ -n "$BASELINE_URL" ]] && ! curl -fsS "$BASELINE_URL/" >/dev/null; then
    echo "load: the baseline does not answer at $BASELINE_URL/ (scripts/bench.sh serves it)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'signal_scorers CONT; rm -rf "$work"' EXIT
service=$(python3 scripts/token.py --sub load-generator --role service --ttl 3600)
run_id=$(date +%s)
duration_seconds=$(python3 - "$DURATION" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", sys.argv[1].strip())
if not m:
    sys.exit(f"load: DURATION must look like 10s, 1m or 500ms, not {sys.argv[1]!r}")
print(float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m[2]])
PY
)

# Bodies for the scenarios that need a new user or conversation per request:
# a fresh file per run (its own ids), oha picking lines at random. 200 000
# lines, or 20 per request of an open-model run, keep repeats (a cached user,
# a replayed conversation) to a few per cent of a run's requests.
bodies() {
    local kind=$1 tag=$2 rate=$3 out=$4
    python3 - "$kind" "$run_id-$tag" "$rate" "$duration_seconds" "$out" <<'PY'
import sys
kind, prefix, rate, seconds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
n = max(200_000, int(20 * rate * seconds))
with open(out, "w") as f:
    if kind == "uncached":
        for i in range(n):
            f.write('{"user_id":"load-miss-%s-%d"}\n' % (prefix, i))
    else:
        for i in range(n):
            f.write('{"user_id":"load-user-%s-%d","conversation_id":"load-%s-%d","metadata":'
                    '{"total_turns":12,"user_initiated_questions":2,"emotion":"happy",'
                    '"new_memories_count":1,"topics":[{"name":"music","turns":8,"user_questions":1}]}}\n'
                    % (prefix, i % 1000, prefix, i))
PY
}
cached_user="load-hit-$run_id"
curl -fsS -X POST "$BASE_URL/api/v1/activities/suggest" -H "authorization: Bearer $service" \
    -H 'content-type: application/json' -d "{\"user_id\":\"$cached_user\"}" >/dev/null
# The suggest peer reads the record under the key of the plan's design,
# `candidates:{user_id}`; the app keeps it in the user's slot of cache_slots
# (scripts/cache_slot.py): the same record is copied there.
if [[ -n "$PEER_SUGGEST_URL" && -n "${PEER_KV_REDIS_URL:-}" ]]; then
    key=$(python3 scripts/cache_slot.py "$cached_user")
    record=$(redis-cli -u "$PEER_KV_REDIS_URL" --no-auth-warning get "$key")
    [[ "$record" == *"\"user_id\":\"$cached_user\""* ]] || { echo "load: the cached record of $cached_user is not in its slot" >&2; exit 1; }
    redis-cli -u "$PEER_KV_REDIS_URL" --no-auth-warning set "candidates:$cached_user" "$record" >/dev/null
fi

summarise() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
scenario, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
total = sum(codes.values()) or 1
print(f"{scenario:<18} {mode:<10} {s['requestsPerSec']:>9.0f} req/s   p50 {(p['p50'] or 0) * 1000:>7.2f} ms   "
      f"p99 {(p['p99'] or 0) * 1000:>7.2f} ms   2xx {100 * ok / total:5.1f}%   codes {codes}", flush=True)
PY
}

# Every run, in order: scenario, mode, rate ("" when flat out), result file.
: >"$work/runs.tsv"

# scenario NAME URL METHOD PATH [oha body options...]; BODIES=uncached|conversations
# makes a fresh body file per run.
scenario() {
    local name=$1 url=$2 method=$3 path=$4
    shift 4
    local mode rate out body=()
    for rate in "" $RATES; do
        if [[ -z "$rate" ]]; then mode=flat-out; else mode="@${rate}/s"; fi
        out="$work/$name-${rate:-flat}.json"
        if [[ -n "${BODIES:-}" ]]; then
            bodies "$BODIES" "$name-${rate:-flat}" "${rate:-0}" "$work/bodies.jsonl"
            body=(-Z "$work/bodies.jsonl")
        fi
        if [[ -z "$rate" ]]; then
            oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" -m "$method" \
                -H "authorization: Bearer $service" -T application/json "$@" "${body[@]}" "$url$path" >"$out"
        else
            oha --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" -q "$rate" --latency-correction \
                -m "$method" -H "authorization: Bearer $service" -T application/json "$@" "${body[@]}" \
                "$url$path" >"$out"
        fi
        rm -f "$work/bodies.jsonl"
        summarise "$name" "$mode" "$out"
        if [[ "$name" == conversation-end && -n "$EVENTS_DATABASE_URL" ]]; then
            processing_lag "load-$run_id-$name-${rate:-flat}-"
        fi
        printf '%s\t%s\t%s\t%s\n' "$name" "$mode" "$rate" "$out" >>"$work/runs.tsv"
    done
}

# How long after their 202 the events of one run (conversation ids starting
# with PREFIX) were processed, once all are (waiting at most 60 s).
processing_lag() {
    local prefix=$1 deadline=$((SECONDS + 60)) line
    while true; do
        line=$(psql "$EVENTS_DATABASE_URL" -qtAF ' ' -v ON_ERROR_STOP=1 -c "
            SELECT count(*), count(*) FILTER (WHERE status = 'pending'),
                   round((extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY processed_at - accepted_at)) * 1000)::numeric),
                   round((extract(epoch FROM max(processed_at - accepted_at)) * 1000)::numeric)
            FROM conversation_events WHERE left(conversation_id, length('$prefix')) = '$prefix'") || {
            echo "  processed after the 202: not known (the events' database did not answer)"
            return
        }
        read -r total pending p99 max <<<"$line"
        if [[ "$pending" == 0 || $SECONDS -ge $deadline ]]; then
            local said="  processed after the 202: $((total - pending)) of $total events, p99 ${p99:-?} ms, max ${max:-?} ms"
            [[ "$pending" == 0 ]] || said+=", $pending still pending after 60 s"
            echo "$said"
            return
        fi
        sleep 1
    done
}

echo "load: $BASE_URL, $DURATION per run, $CONNECTIONS connections, open-model rates: $RATES/s"
if [[ -n "$BASELINE_URL" ]]; then
    echo "load: baseline $BASELINE_URL/ (hello world, same server)"
    scenario baseline "$BASELINE_URL" GET /
fi
scenario trivial "$BASE_URL" GET /health/live
[[ -z "$PEER_SUGGEST_URL" ]] || scenario peer-trivial "$PEER_SUGGEST_URL" GET /health/live
scenario cached-suggest "$BASE_URL" POST /api/v1/activities/suggest -d "{\"user_id\":\"$cached_user\"}"
[[ -z "$PEER_SUGGEST_URL" ]] ||
    scenario peer-cached-suggest "$PEER_SUGGEST_URL" POST /api/v1/activities/suggest -d "{\"user_id\":\"$cached_user\"}"
BODIES=uncached scenario uncached-suggest "$BASE_URL" POST /api/v1/activities/suggest
BODIES=conversations scenario conversation-end "$BASE_URL" POST /api/v1/conversations/end
if [[ -n "$SCORERS_PID" ]]; then
    signal_scorers STOP
    BODIES=conversations scenario conversation-end-stopped "$BASE_URL" POST /api/v1/conversations/end
    signal_scorers CONT
fi
[[ -z "$PEER_END_URL" ]] || BODIES=conversations scenario peer-conversation-end "$PEER_END_URL" POST /api/v1/conversations/end

python3 - "$work/runs.tsv" "$P99_TARGET_MS" <<'PY'
import json, sys
runs_path, target = sys.argv[1], float(sys.argv[2])
runs = []
for line in open(runs_path):
    name, mode, rate, path = line.rstrip("\n").split("\t")
    r = json.load(open(path))
    codes = r.get("statusCodeDistribution", {})
    total = sum(codes.values())
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    p = r["latencyPercentiles"]
    runs.append({
        "name": name, "mode": mode, "rate": int(rate) if rate else None,
        "rps": r["summary"]["requestsPerSec"] or 0.0,
        "p50": (p["p50"] or 0) * 1000, "p99": (p["p99"] or 0) * 1000,
        "ok": 100.0 * ok / total if total else 0.0,
    })
base = {r["mode"]: r["rps"] for r in runs if r["name"] == "baseline"}
modes = list(dict.fromkeys(r["mode"] for r in runs))
print()
print(f"{'scenario':<18} {'run':<10} {'req/s':>9} {'% of base':>10} {'p50 ms':>9} {'p99 ms':>9} {'2xx':>7}")
for mode in modes:
    for r in (r for r in runs if r["mode"] == mode):
        pct = f"{100 * r['rps'] / base[mode]:.1f}%" if base.get(mode) else "-"
        print(f"{r['name']:<18} {mode:<10} {r['rps']:>9.0f} {pct:>10} {r['p50']:>9.2f} {r['p99']:>9.2f} {r['ok']:>6.1f}%")
print()
for r in runs:
    if r["rate"] is None or r["name"] not in ("uncached-suggest", "conversation-end", "conversation-end-stopped"):
        continue
    why = []
    if r["rps"] < 0.95 * r["rate"]:
        why.append(f"{r['rps']:.0f} req/s achieved")
    if r["p99"] > target:
        why.append(f"p99 {r['p99']:.1f} ms")
    if r["ok"] < 100.0:
        why.append(f"{100 - r['ok']:.1f}% not 2xx")
    verdict = "yes" if not why else "no (" + ", ".join(why) + ")"
    print(f"holds {r['rate']}/s with p99 <= {target:g} ms: {r['name']:<24} {verdict}")
pairs = [("trivial", "peer-trivial"), ("cached-suggest", "peer-cached-suggest"),
         ("conversation-end-stopped", "peer-conversation-end"), ("conversation-end", "peer-conversation-end")]
by = {(r["name"], r["mode"]): r for r in runs}
if any(name.startswith("peer-") for name, _ in by):
    print()
    print(f"{'app / peer':<26} {'run':<10} {'app req/s':>10} {'peer req/s':>11} {'app/peer':>9} {'app p99':>9} {'peer p99':>9}")
    for app, peer in pairs:
        for mode in modes:
            a, p = by.get((app, mode)), by.get((peer, mode))
            if not a or not p:
                continue
            ratio = f"{a['rps'] / p['rps']:.2f}" if p["rps"] else "-"
            print(f"{app:<26} {mode:<10} {a['rps']:>10.0f} {p['rps']:>11.0f} {ratio:>9} {a['p99']:>9.2f} {p['p99']:>9.2f}")
    print("(conversation-end: scorers running; -stopped: paused, the same work as the peer, which scores nothing)")
PY

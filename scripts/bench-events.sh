#!/usr/bin/env bash
# Measures events per second end to end, from the moment an event is handed
# to the service until the scorers have processed it, for each way in: the
# Redis Stream (XADD), the Redis channel (PUBLISH) and HTTP (202). Loopback
# only, bounded by COUNT events per way in (default 10000) and a deadline.
#
#   bash scripts/run.sh &                  # the service, in another shell
#   SPIN_VARIABLE_JWT_SECRET=... bash scripts/bench-events.sh
#
# Needs DATABASE_URL and REDIS_URL as run.sh used them (defaults: the
# machine's servers, database `friendship`), redis-cli, psql, python3, oha.
# Rates are events / (last processed_at - the moment the hand-over began,
# XADD, PUBLISH or the first POST), read from Postgres's clock, so they
# include handing over, recording, queueing and scoring.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-10000}
BASE_URL=${BASE_URL:-http://127.0.0.1:3000}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/friendship}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
CHANNEL=${SPIN_VARIABLE_EVENTS_CHANNEL:-conversation-events}
STREAM=${SPIN_VARIABLE_EVENTS_STREAM:-conversation-events:stream}
DEADLINE_SECONDS=${DEADLINE_SECONDS:-180}
for url in "$BASE_URL" "$DATABASE_URL" "$REDIS_URL"; do
    case "$url" in
        *://127.*|*://localhost*|*://\[::1\]*|*@127.*|*@localhost*) ;;
        *) echo "bench-events: only loopback servers, not $url" >&2; exit 2 ;;
    esac
done
: "${SPIN_VARIABLE_JWT_SECRET:?set SPIN_VARIABLE_JWT_SECRET to the jwt_secret of the service}"

run_id=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# RESP commands for redis-cli --pipe, and JSON lines for oha, one event each.
python3 - "$work" "$run_id" "$COUNT" "$CHANNEL" "$STREAM" <<'PY'
import json, sys
work, run_id, n, channel, stream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        b = a.encode()
        out += f"${len(b)}\r\n{a}\r\n"
    return out
def event(way, i):
    return json.dumps({"user_id": f"bench-{way}-{run_id}-{i % 1000}",
                       "conversation_id": f"bench-{way}-{run_id}-{i}",
                       "metadata": {"total_turns": 12, "user_initiated_questions": 2, "emotion": "happy",
                                    "new_memories_count": 1,
                                    "topics": [{"name": "music", "turns": 8, "user_questions": 1}]}},
                      separators=(",", ":"))
with open(f"{work}/stream.resp", "w") as f:
    for i in range(n):
        f.write(resp("XADD", stream, "*", "event", event("stream", i)))
    f.write(resp("PUBLISH", channel, '{"kind":"tick"}'))
with open(f"{work}/channel.resp", "w") as f:
    for i in range(n):
        f.write(resp("PUBLISH", channel, event("channel", i)))
with open(f"{work}/http.jsonl", "w") as f:
    for i in range(n):
        f.write(event("http", i) + "\n")
PY

# The database's clock now: when a way in starts handing its events over.
db_now() {
    psql "$DATABASE_URL" -qtAc "SELECT clock_timestamp()"
}

# Waits until $2 events of a way in are processed; $3 is when their hand-over began.
wait_processed() {
    local way=$1 expected=$2 started=$3 deadline=$((SECONDS + DEADLINE_SECONDS)) done
    while true; do
        done=$(psql "$DATABASE_URL" -qtAc "SELECT count(*) FROM conversation_events
            WHERE conversation_id LIKE 'bench-$way-$run_id-%' AND status = 'processed'")
        [[ "$done" -ge "$expected" ]] && break
        if ((SECONDS > deadline)); then
            echo "bench-events: $way: only $done of $expected processed after ${DEADLINE_SECONDS}s" >&2
            break
        fi
        sleep 0.5
    done
    psql "$DATABASE_URL" -qtAc "SELECT format('%-8s %6s events  %8s events/s  (hand-over start to last processed: %s s)',
            '$way', count(*),
            round(count(*) / greatest(extract(epoch FROM max(processed_at) - '$started'::timestamptz), 0.001)),
            round(extract(epoch FROM max(processed_at) - '$started'::timestamptz)::numeric, 2))
        FROM conversation_events WHERE conversation_id LIKE 'bench-$way-$run_id-%' AND status = 'processed'"
}

echo "bench-events: $COUNT events per way in"
started=$(db_now)
redis-cli -u "$REDIS_URL" --pipe <"$work/stream.resp" >/dev/null
wait_processed stream "$COUNT" "$started"
started=$(db_now)
redis-cli -u "$REDIS_URL" --pipe <"$work/channel.resp" >/dev/null
wait_processed channel "$COUNT" "$started"
token=$(python3 scripts/token.py --sub bench-events --role service --ttl 3600)
started=$(db_now)
# oha -Z picks body lines at random: some conversations are sent more than
# once (answered 202 as repeats), so what is waited for is what was recorded.
oha --no-tui -n "$COUNT" -c 16 -m POST -H "authorization: Bearer $token" -T application/json \
    -Z "$work/http.jsonl" "$BASE_URL/api/v1/conversations/end" >/dev/null
recorded=$(psql "$DATABASE_URL" -qtAc "SELECT count(*) FROM conversation_events
    WHERE conversation_id LIKE 'bench-http-$run_id-%'")
wait_processed http "$recorded" "$started"

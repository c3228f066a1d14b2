#!/usr/bin/env bash
# The dashboard against the real thing: serves the app as scripts/run.sh does
# (private Postgres and Redis, its scorers, a metrics token), starts a real
# Prometheus (Debian's `prometheus` package; installed where missing) that
# scrapes its /metrics every second, drives a short known workload (users'
# conversation ends, cache misses and hits, a rejected channel message), and
# then asks Prometheus every query of deploy/monitoring/dashboard.json: each
# must answer a series with plausible values (scripts/monitoring.py scrape).
#
#   bash scripts/check-dashboard.sh      # SPIN_BIN picks the server as run.sh does
#
# Bounded: START_TIMEOUT (seconds for the builds and the start, 900); the
# workload and the scrapes take about half a minute. Everything it starts is
# stopped, whatever happens; its output goes to .run/dashboard/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# shellcheck source=scripts/services.sh
. scripts/services.sh

START_TIMEOUT=${START_TIMEOUT:-900}
out=.run/dashboard
rm -rf "$out" && mkdir -p "$out"
log() { echo "check-dashboard: $*" >&2; }

app_pid="" prom_pid=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n "$prom_pid" ]] && kill -TERM "$prom_pid" 2>/dev/null || true
    if [[ -n "$app_pid" ]]; then
        kill -TERM "$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if ((status != 0)); then
        log "failed; the app's log: $out/app.log, Prometheus's: $out/prometheus.log"
        tail -n 20 "$out/app.log" >&2 || true
    fi
    stop_services
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v prometheus >/dev/null; then
    services_apt_install prometheus
    # Debian's package enables and starts its own server where systemd runs.
    command -v systemctl >/dev/null && systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

export SERVICES_FORCE_PRIVATE=${SERVICES_FORCE_PRIVATE:-1}
ensure_services
services_use_database friendship_dashboard

SPIN_VARIABLE_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
SPIN_VARIABLE_METRICS_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# Every suggestion and every request counted, so the cache and request
# counters move with a short workload.
SPIN_VARIABLE_CACHE_COUNT_EVERY=1
SPIN_VARIABLE_REQUEST_COUNT_EVERY=1
export SPIN_VARIABLE_JWT_SECRET SPIN_VARIABLE_METRICS_TOKEN SPIN_VARIABLE_CACHE_COUNT_EVERY SPIN_VARIABLE_REQUEST_COUNT_EVERY
listen=127.0.0.1:$(services_free_port)
base=http://$listen
log "serving the app on $base (scripts/run.sh; output in $out/app.log)"
services_run_app "$listen" "$out"
app_pid=$services_app_pid
services_wait_for_200 "$base/health" "$app_pid" "$out/app.log" "$START_TIMEOUT"

job=friendship-context
prom_listen=127.0.0.1:$(services_free_port)
printf '%s\n' "$SPIN_VARIABLE_METRICS_TOKEN" >"$out/token"
cat >"$out/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: $job
    metrics_path: /metrics
    authorization:
      credentials_file: $root/$out/token
    static_configs:
      - targets: ["$listen"]
YAML
log "Prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}') on http://$prom_listen, scraping $base/metrics every second"
prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$out/tsdb" \
    --web.listen-address="$prom_listen" >"$out/prometheus.log" 2>&1 &
prom_pid=$!
# Two scrapes of the idle app first: rates need a sample before the workload.
up() {
    curl -fsS "http://$prom_listen/api/v1/query?query=up%7Bjob%3D%22$job%22%7D" 2>/dev/null |
        python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
deadline=$((SECONDS + 60))
until [[ "$(up)" == 1 ]]; do
    kill -0 "$prom_pid" 2>/dev/null || { log "Prometheus exited"; cat "$out/prometheus.log" >&2; exit 1; }
    ((SECONDS < deadline)) || { log "Prometheus never scraped the app"; exit 1; }
    sleep 1
done
sleep 2

log "the workload: conversation ends, suggestions (misses, then hits), a rejected message"
service=$(python3 scripts/token.py --sub dashboard-check --role service --ttl 600)
post() {
    curl -fsS -o /dev/null -X POST "$base$1" -H "authorization: Bearer $service" \
        -H 'content-type: application/json' -d "$2"
}
for u in 1 2 3; do
    for c in 1 2 3 4; do
        post /api/v1/conversations/end "{\"user_id\":\"dash-$u\",\"conversation_id\":\"dash-$u-$c\",
            \"metadata\":{\"total_turns\":$((c * 10)),\"user_initiated_questions\":$c,\"emotion\":\"happy\",
            \"topics\":[{\"name\":\"music\",\"turns\":3,\"user_questions\":1}]}}"
    done
done
for round in 1 2 3; do
    for u in 1 2 3; do post /api/v1/activities/suggest "{\"user_id\":\"dash-$u\"}"; done
    sleep 1
done
redis-cli -u "$REDIS_URL" PUBLISH conversation-events 'not an event' >/dev/null
# Scored, counted and scraped a few times over.
sleep 8

python=python3
python3 -c 'import yaml' 2>/dev/null || python=.run/monitoring-venv/bin/python
if ! "$python" -c 'import yaml' 2>/dev/null; then
    python3 -m venv .run/monitoring-venv
    .run/monitoring-venv/bin/pip install --quiet pyyaml
fi
status=0
"$python" scripts/monitoring.py scrape "http://$prom_listen" "$job" || status=$?
exit "$status"

#!/usr/bin/env bash
# Checks the monitoring of deploy/monitoring/ offline, in seconds, from any
# directory; docs/operations.md explains what is checked and why.
#
#   bash scripts/check-monitoring.sh
#
#   1. promtool check rules   the rules file parses and its expressions too;
#   2. promtool test rules    deploy/monitoring/tests/*.yaml: each alert fires
#                             on one series and stays silent on another, with
#                             exact labels and annotations;
#   3. scripts/monitoring.py check: the PrometheusRule equals what the rules
#      file generates; every alert has severity, summary, description and a
#      runbook that exists; rules and dashboard name only what /metrics serves;
#      every dashboard query parses (through promtool).
#
# Installs what is missing: promtool with Debian's `prometheus` package (and
# stops and disables the Prometheus server that package may start: nothing
# here uses a server), PyYAML into a venv under .run/.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# shellcheck source=scripts/services.sh
. scripts/services.sh

if ! command -v promtool >/dev/null; then
    services_apt_install prometheus
    # Debian's package enables prometheus.service and starts it where systemd
    # runs. These checks need only promtool.
    if command -v systemctl >/dev/null; then
        sudo=()
        [[ $EUID -eq 0 ]] || sudo=(sudo -n)
        "${sudo[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi
promtool=$(command -v promtool)

python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
    venv=.run/monitoring-venv
    if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
        echo "check-monitoring: installing PyYAML into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet pyyaml
    fi
    python=$venv/bin/python
fi

rules=deploy/monitoring/rules/friendship.rules.yaml
tests=(deploy/monitoring/tests/*.yaml)
failed=()

# Runs a step; prints its summary (the lines matching PATTERN) when it
# passes, all its output when it fails.
step() {
    local name=$1 pattern=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        grep -E "$pattern" <<<"$out" | sed -E "s/^ +//; s/^Unit Testing: +(.*)/\1: SUCCESS/; s/^/check-monitoring: $name: /" || true
    else
        sed "s/^/check-monitoring: $name: /" <<<"$out" >&2
        failed+=("$name")
    fi
}

step "promtool check rules" 'SUCCESS' "$promtool" check rules --lint=all --lint-fatal "$rules"
step "promtool test rules" 'Unit Testing' "$promtool" test rules "${tests[@]}"
step "monitoring.py check" '^monitoring: ok' env PROMTOOL="$promtool" "$python" scripts/monitoring.py check

cases=$(cat "${tests[@]}" | grep -cE '^  - name: ')
if ((${#failed[@]} == 0)); then
    echo "check-monitoring: ok: rules check, ${#tests[@]} test files ($cases cases) pass, PrometheusRule in sync, dashboard queries parse, in $((SECONDS - started)) s"
    exit 0
fi
echo "check-monitoring: FAILED: ${failed[*]} ($((SECONDS - started)) s)"
exit 1

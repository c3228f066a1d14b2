#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: it installs what is
# missing (the wasm target; OpenSSL's headers for the test host's TLS;
# Postgres and Redis when none answers, and their server binaries, which the
# fault tests start privately), builds the Spin components, and runs the
# whole workspace's tests (domain, SQL, edge, migrator, and the end-to-end
# suite that runs the built .wasm components).
#
# The end-to-end suite runs on every server at hand: the project's test host
# imitating Spin 4.0 (the default) and then Spin 3.6, always; then each real
# Spin CLI named in SPIN_BINS (paths, space-separated), or else the `spin` on
# PATH, if any, running every test that needs no hook inside the runtime
# (those named `..._on_the_host` are skipped there). A machine without any
# Spin runs the host's modes only, and says so.
#
# Then, outside cargo: the README's run command on private servers
# (scripts/check-run.sh), the HTTP contract fuzzed from openapi.json
# (scripts/contract.sh: under the first real Spin, else the host), the
# Kubernetes manifests (deploy/check.sh; against the CRDs under K8S_CRDS
# when set) and the monitoring rules, their tests and the dashboard
# (scripts/check-monitoring.sh), and the dashboard's queries against a real
# Prometheus scraping the app (scripts/check-dashboard.sh).
#
#   bash scripts/test.sh [extra cargo test arguments]
#   SPIN_BINS="/path/4.0.2/spin /path/3.6.3/spin" bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/services.sh
. scripts/services.sh
trap stop_services EXIT
ensure_services
# The fault tests pause and restart servers of their own, never the shared ones.
services_pg_bin >/dev/null
if ! command -v redis-server >/dev/null; then
    services_apt_install redis-server
fi
# native-tls (the test host's Postgres TLS, as Spin's) builds against OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then
    services_apt_install libssl-dev pkg-config
fi

# The real Spin CLIs of this run.
spin_bins=()
if [[ -n "${SPIN_BINS:-}" ]]; then
    read -ra spin_bins <<<"$SPIN_BINS"
elif command -v spin >/dev/null; then
    spin_bins=("$(command -v spin)")
fi
for bin in "${spin_bins[@]}"; do
    "$bin" --version >/dev/null || { echo "test.sh: $bin is not a Spin CLI" >&2; exit 2; }
done
# A bound on each end-to-end run, so a hang fails the run instead of holding it.
E2E_TIMEOUT=${E2E_TIMEOUT:-1800}

bash scripts/build-components.sh

# Each pass's whole output, kept for reading after a failure.
logs=.run/test-logs
rm -rf "$logs"
mkdir -p "$logs"
trap stop_services EXIT
status=0
summary=()

# Runs one end-to-end pass in a session of its own: whatever it leaves
# running when it ends (a real Spin's trigger processes, when the bound kills
# the suite) is killed with the session. $1: what serves the app; $2: its
# log; the rest: the command.
e2e_pass() {
    local server=$1 log=$2
    shift 2
    local pass_status=0 pid
    # Created first: `tail` below must find it even if it starts before the
    # pass has opened it (it gave up, and the pass's output went unshown).
    : >"$log"
    setsid timeout -k 10 "$E2E_TIMEOUT" "$@" >"$log" 2>&1 &
    pid=$!
    # Shown as it comes; `tail` ends once the pass has and its log is read.
    tail -n +1 -f --pid="$pid" "$log" &
    local tail_pid=$!
    wait "$pid" || pass_status=$?
    pkill -KILL -s "$pid" 2>/dev/null || true
    wait "$tail_pid" || true
    if ((pass_status == 124 || pass_status == 137)); then
        echo "test.sh: the end-to-end suite on $server did not finish within ${E2E_TIMEOUT}s" >&2
    fi
    summary+=("e2e on $server: $(awk '/^test result:/ { p += $4; f += $6 }
        END { printf "%d passed, %d failed", p, f }' "$log")$([[ $pass_status == 0 ]] || echo " (exit status $pass_status; $log)")")
    # The failed tests by name, so a failure is found without the log.
    local failed
    failed=$(grep -E '^test .* FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | paste -sd ' ' -) || true
    [[ -z "$failed" ]] || summary+=("  failed: $failed")
    return "$pass_status"
}

# Every test binary built first, outside the passes' time bound (a fresh
# clone's build takes most of a quarter of an hour on two cores).
echo "test.sh: building the test binaries" >&2
cargo test --locked --no-run "$@"
# The root's default members are the native crates; the components are wasm.
# --no-fail-fast: one failing binary must not hide the others' results.
echo "test.sh: the workspace, the end-to-end suite on the test host imitating Spin 4.0" >&2
e2e_pass "the test host imitating Spin 4.0 (with the workspace)" "$logs/host-4.0" \
    env SPIN_COMPAT=4.0 SPIN_BIN= cargo test --locked --no-fail-fast "$@" || status=$?
echo "test.sh: the end-to-end suite on the test host imitating Spin 3.6" >&2
e2e_pass "the test host imitating Spin 3.6" "$logs/host-3.6" \
    env SPIN_COMPAT=3.6 SPIN_BIN= cargo test --locked -p e2e --test e2e "$@" || status=$?
if ((${#spin_bins[@]} == 0)); then
    echo "test.sh: no real Spin CLI (SPIN_BINS unset, no spin on PATH): the end-to-end suite ran on the test host only" >&2
    summary+=("e2e on a real Spin: not run (SPIN_BINS unset, no spin on PATH)")
fi
n=0
for bin in "${spin_bins[@]}"; do
    n=$((n + 1))
    version=$("$bin" --version | head -n 1)
    echo "test.sh: the end-to-end suite on the real $version ($bin)" >&2
    e2e_pass "the real $version" "$logs/spin-$n" \
        env SPIN_BIN="$bin" cargo test --locked -p e2e --test e2e "$@" -- --skip _on_the_host || status=$?
done

# What run.sh builds (the migrator and the wasmtime host, optimised), built
# here first, outside the start-up bounds of the checks that serve the app.
echo "test.sh: building what scripts/run.sh serves with" >&2
cargo build --locked --profile host -p migrator
cargo build --locked --profile host -p e2e --bin spin-host
echo "test.sh: the README's run command on private servers (scripts/check-run.sh)" >&2
run_check=ok
SPIN_BIN= bash scripts/check-run.sh || { status=$?; run_check=FAILED; }
contract_server="the test host"
if ((${#spin_bins[@]} > 0)); then
    contract_server="the real $("${spin_bins[0]}" --version | head -n 1)"
fi
echo "test.sh: the HTTP contract on $contract_server (scripts/contract.sh: schemathesis against openapi.json)" >&2
contract_check=ok
SPIN_BIN=${spin_bins[0]:-} bash scripts/contract.sh || { status=$?; contract_check=FAILED; }
echo "test.sh: the Kubernetes manifests (deploy/check.sh)" >&2
deploy_check=ok
bash deploy/check.sh || { status=$?; deploy_check=FAILED; }
echo "test.sh: the monitoring rules, their tests and the dashboard (scripts/check-monitoring.sh)" >&2
monitoring_check=ok
bash scripts/check-monitoring.sh || { status=$?; monitoring_check=FAILED; }
echo "test.sh: the dashboard's queries against a real Prometheus scraping the app on $contract_server (scripts/check-dashboard.sh)" >&2
dashboard_check=ok
SPIN_BIN=${spin_bins[0]:-} bash scripts/check-dashboard.sh || { status=$?; dashboard_check=FAILED; }
# The closing lines: per server, then one for the whole run over every test
# binary's summary.
printf '%s\n' "${summary[@]}"
cat "$logs"/* | awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "workspace: %d passed, %d failed, %d skipped\n", passed, failed, ignored }'
echo "run command (scripts/check-run.sh): $run_check; contract on $contract_server (scripts/contract.sh): $contract_check; manifests (deploy/check.sh): $deploy_check; monitoring (scripts/check-monitoring.sh): $monitoring_check; dashboard on a real Prometheus (scripts/check-dashboard.sh): $dashboard_check"
exit "$status"

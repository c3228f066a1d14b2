#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: it installs what is
# missing (the wasm target; OpenSSL's headers for the test host's TLS;
# Postgres and Redis when none answers, and their server binaries, which the
# fault tests start privately), builds the Spin components, and runs the
# whole workspace's tests (domain, SQL, edge, migrator, and the end-to-end
# suite that runs the built .wasm components). The end-to-end suite runs
# twice: with the test host imitating Spin 4.0 (the default), then Spin 3.6.
# Then, outside cargo: the README's run command on private servers
# (scripts/check-run.sh), the HTTP contract fuzzed from openapi.json
# (scripts/contract.sh), the Kubernetes manifests (deploy/check.sh) and the
# monitoring rules, their tests and the dashboard (scripts/check-monitoring.sh).
#
#   bash scripts/test.sh [extra cargo test arguments]
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

bash scripts/build-components.sh

log=$(mktemp)
trap 'rm -f "$log"; stop_services' EXIT
status=0
# The root's default members are the native crates; the components are wasm.
# --no-fail-fast: one failing binary must not hide the others' results.
SPIN_COMPAT=4.0 cargo test --locked --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=$?
echo "test.sh: the end-to-end suite again, the test host imitating Spin 3.6" >&2
SPIN_COMPAT=3.6 cargo test --locked -p e2e --test e2e "$@" 2>&1 | tee -a "$log" || status=$?
echo "test.sh: the README's run command on private servers (scripts/check-run.sh)" >&2
run_check=ok
bash scripts/check-run.sh || { status=$?; run_check=FAILED; }
echo "test.sh: the HTTP contract (scripts/contract.sh: schemathesis against openapi.json)" >&2
contract_check=ok
bash scripts/contract.sh || { status=$?; contract_check=FAILED; }
echo "test.sh: the Kubernetes manifests (deploy/check.sh)" >&2
deploy_check=ok
bash deploy/check.sh || { status=$?; deploy_check=FAILED; }
echo "test.sh: the monitoring rules, their tests and the dashboard (scripts/check-monitoring.sh)" >&2
monitoring_check=ok
bash scripts/check-monitoring.sh || { status=$?; monitoring_check=FAILED; }
# One closing line for the whole run, over every test binary's summary.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "workspace: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
echo "run command (scripts/check-run.sh): $run_check; contract (scripts/contract.sh): $contract_check; manifests (deploy/check.sh): $deploy_check; monitoring (scripts/check-monitoring.sh): $monitoring_check"
exit "$status"

#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: it installs what is
# missing (the wasm target; Postgres and Redis when none answers, and their
# server binaries, which the fault tests start privately), builds the Spin
# components, and runs the whole workspace's tests (domain, SQL, edge,
# migrator, and the end-to-end suite that runs the built .wasm components).
#
#   bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/services.sh
. scripts/services.sh
ensure_services
trap stop_services EXIT
# The fault tests pause and restart servers of their own, never the shared ones.
services_pg_bin >/dev/null
if ! command -v redis-server >/dev/null; then
    services_apt_install redis-server
fi

bash scripts/build-components.sh

# The root's default members are the native crates; the components are wasm.
log=$(mktemp)
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, over every test binary's summary.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "workspace: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
rm -f "$log"
exit "$status"

#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: it installs what is
# missing (the wasm target; Postgres and Redis when none answers), builds the
# Spin components, and runs the whole workspace's tests (domain, SQL, edge,
# migrator, and the end-to-end suite that runs the built .wasm components).
#
#   bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/services.sh
. scripts/services.sh
ensure_services
trap stop_services EXIT

bash scripts/build-components.sh
# The root's default members are the native crates; the components are wasm.
cargo test --locked "$@"

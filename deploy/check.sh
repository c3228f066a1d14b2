#!/usr/bin/env bash
# Checks the manifests of deploy/ (deploy/check.py), from any directory:
#   bash deploy/check.sh
# Uses python3 with PyYAML; without PyYAML, installs it once into a venv under .run/.
set -euo pipefail
deploy=$(cd "$(dirname "$0")" && pwd)
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
    venv="$deploy/../.run/deploy-venv"
    if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
        echo "check: installing PyYAML into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet pyyaml
    fi
    python="$venv/bin/python"
fi
exec "$python" "$deploy/check.py" "$@"

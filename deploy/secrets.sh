#!/usr/bin/env bash
# Creates or updates the two Secrets the manifests read, from the environment,
# without putting a value on a command line or in a file of the repository:
#
#   friendship-context-secrets          jwt_secret metrics_token db_url redis_url
#   friendship-context-runtime-config   runtime-config.toml (the key-value store)
#
#   JWT_SECRET=... DB_URL=... REDIS_URL=... KV_URL=... bash deploy/secrets.sh
#
# JWT_SECRET  HS256 secret of the bearer tokens (the token issuers share it)
# DB_URL      Spin's db_url, e.g. postgres://user:pass@host:5432/friendship?sslmode=require&connect_timeout=2&options=-c%20statement_timeout%3D2000
# REDIS_URL   Redis of the channel, the stream and the counters (noeviction)
# KV_URL      Redis of the key-value cache (allkeys-lru), with its database
# METRICS_TOKEN  optional: a random one is made when unset (Prometheus reads it
#             from the Secret through deploy/monitoring; nobody needs to see it)
# NAMESPACE   default friendship; KUBECTL default kubectl
#
# The hosts of the URLs are compared with db_host, redis_host and kv_host in
# deploy/config.yaml: Spin refuses any server its allow-list does not name.
# Pods read Secrets when they start: after changing one, restart them
# (deploy/README.md, "Rotating a secret").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
namespace=${NAMESPACE:-friendship}
kubectl=${KUBECTL:-kubectl}

# deploy/check.py reads these three lines: keep their form.
APP_SECRET=friendship-context-secrets
APP_SECRET_KEYS=(jwt_secret metrics_token db_url redis_url)
RUNTIME_SECRET=friendship-context-runtime-config

missing=()
for name in JWT_SECRET DB_URL REDIS_URL KV_URL; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
done
if ((${#missing[@]})); then
    echo "secrets: set ${missing[*]} (see the top of $0)" >&2
    exit 2
fi
if [[ -z "${METRICS_TOKEN:-}" ]]; then
    METRICS_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    echo "secrets: METRICS_TOKEN unset: a random one goes into $APP_SECRET" >&2
fi

# The URLs' host:port against deploy/config.yaml (a key=value db_url is not compared).
python3 - "$here/config.yaml" <<'EOF'
import os, re, sys
sys.path.insert(0, os.path.join(os.path.dirname(sys.argv[1]), "..", "scripts"))
from urls import host_port
config = dict(re.findall(r'^  ([a-z_]+): "?([^"\n]*)"?$', open(sys.argv[1]).read(), re.M))
wrong = []
for env, key in (("DB_URL", "db_host"), ("REDIS_URL", "redis_host"), ("KV_URL", "kv_host")):
    url = os.environ[env]
    if "://" not in url:
        continue
    if host_port(url) != config.get(key):
        wrong.append(f"{env} names {host_port(url)}, deploy/config.yaml's {key} is {config.get(key)!r}")
if wrong:
    sys.exit("secrets: " + "; ".join(wrong) + ": fix config.yaml (or the URL) first")
EOF

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 700 "$dir"
printf '%s' "$JWT_SECRET" >"$dir/jwt_secret"
printf '%s' "$METRICS_TOKEN" >"$dir/metrics_token"
printf '%s' "$DB_URL" >"$dir/db_url"
printf '%s' "$REDIS_URL" >"$dir/redis_url"
python3 -c 'import json, sys; print("[key_value_store.default]\ntype = \"redis\"\nurl = " + json.dumps(sys.argv[1]))' \
    "$KV_URL" >"$dir/runtime-config.toml"

# Server-side apply: no copy of the values in a last-applied annotation.
apply() {
    "$kubectl" -n "$namespace" create secret generic "$@" --dry-run=client -o yaml \
        | "$kubectl" -n "$namespace" apply --server-side --force-conflicts \
            --field-manager=friendship-secrets -f - >/dev/null
}
from_files=()
for key in "${APP_SECRET_KEYS[@]}"; do from_files+=("--from-file=$key=$dir/$key"); done
apply "$APP_SECRET" "${from_files[@]}"
apply "$RUNTIME_SECRET" "--from-file=runtime-config.toml=$dir/runtime-config.toml"
echo "secrets: $APP_SECRET (${APP_SECRET_KEYS[*]}) and $RUNTIME_SECRET (runtime-config.toml) applied in namespace $namespace" >&2

#!/usr/bin/env bash
# Builds every Spin component of spin.toml for wasm32-wasip2 (what `spin build`
# runs, in one cargo invocation), adding the target when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

packages=()
for dir in components/*/; do
    packages+=(-p "$(basename "$dir")")
done
cargo build --locked --target wasm32-wasip2 --release "${packages[@]}"

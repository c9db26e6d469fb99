#!/usr/bin/env bash
# Builds the edge worker (edge/) to edge/build/{index.js,index_bg.wasm} with
# worker-build, installing the pinned tools when missing. worker-build would
# otherwise download wasm-bindgen and wasm-opt from GitHub: it is pointed at the
# local wasm-bindgen (the exact version in Cargo.lock) and wrangler's esbuild,
# and wasm-opt is skipped (--no-opt).
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
if [ "$(worker-build --version 2>/dev/null)" != "$WORKER_BUILD_VERSION" ]; then
  cargo install "worker-build@$WORKER_BUILD_VERSION" --locked
fi
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  # Not --locked: a pinned dependency of some releases is missing from the registry.
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi
if [ ! -x node_modules/.bin/esbuild ] || [ ! -x node_modules/.bin/workerd ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

cd edge
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" \
ESBUILD_BIN="$PWD/../node_modules/.bin/esbuild" \
  worker-build --release --no-opt
ls -l build/index.js build/index_bg.wasm

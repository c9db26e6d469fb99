#!/usr/bin/env bash
# Runs pushwire's whole test suite on a fresh machine: installs what is missing
# (redis-server, Prometheus, Node.js, Chromium, Python's venv, openssl, the wasm target, worker-build
# and wasm-bindgen-cli, the npm packages pinned in package-lock.json and
# tests/js/package-lock.json, the PyPI packages pinned in
# tests/python/requirements.txt), then checks formatting and lints, builds the
# protocol crate and the edge worker for wasm, and runs every unit, doc and
# end-to-end test.
# The end-to-end tests start their own redis-server and pushwire processes on
# free loopback ports and stop them when done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

if ! command -v redis-server >/dev/null 2>&1; then
  say "installing redis-server"
  apt_install redis-server
fi
if ! command -v prometheus >/dev/null 2>&1; then
  say "installing Prometheus (the metrics test scrapes with a real one)"
  apt_install prometheus
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing Node.js and npm"
  apt_install nodejs npm
fi
if [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium (the demo page's browser test)"
  apt_install chromium
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  say "installing Python 3 with venv (the Python client tests)"
  apt_install python3 python3-venv
fi
if ! command -v openssl >/dev/null 2>&1; then
  say "installing openssl (the https webhook tests make their test CA with it)"
  apt_install openssl
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    say "installing rustup component $component"
    rustup component add "$component"
  fi
done
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

say "installing the test clients (npm ci in tests/js) and wrangler/workerd (npm ci)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
npm ci --no-audit --no-fund --loglevel=error

say "installing the Python test clients (pinned in tests/python/requirements.txt, into tests/python/.venv)"
[ -x tests/python/.venv/bin/python ] || python3 -m venv tests/python/.venv
tests/python/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (native, and the edge worker for wasm)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p pushwire-edge --target wasm32-unknown-unknown -- -D warnings

say "building the protocol crate for wasm32-unknown-unknown"
cargo build -p pushwire-shared --target wasm32-unknown-unknown

say "building the pushwire binary"
cargo build --workspace

say "building the edge worker (wasm) and its deploy bundle"
bash scripts/build-edge.sh
# Offline: no login, no metrics, no update check; wrangler's state stays in a temp dir.
wrangler_home=$(mktemp -d)
CI=1 WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false WRANGLER_HIDE_BANNER=true \
CLOUDFLARE_CF_FETCH_ENABLED=false XDG_CONFIG_HOME="$wrangler_home" TMPDIR="$wrangler_home" \
WRANGLER_LOG_PATH="$wrangler_home/logs" \
  node_modules/.bin/wrangler deploy --dry-run --outdir "$wrangler_home/dist" 2>&1 | grep -E "Total Upload|error" || true
ls -l "$wrangler_home/dist"
rm -rf "$wrangler_home"

say "cargo test (end-to-end against a 2-worker cluster)"
cargo test --workspace

say "end-to-end again, against a single worker"
PUSHWIRE_TEST_WORKERS=1 cargo test -p pushwire-tests

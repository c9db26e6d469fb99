#!/usr/bin/env bash
# BENCHMARKS.md scenario (e): the latency the edge path (workerd running the
# built edge worker → pushwire bridge → Redis) adds over triggering an origin
# directly. Same subscribers, same generator; prints one JSON line per path.
#
#   bash scripts/build-edge.sh && bash scripts/bench-edge.sh > edge.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
token=bench-only-token-$RANDOM$RANDOM
source scripts/bench-lib.sh

redis_port=$(free_port); bridge_port=$(free_port); origin_port=$(free_port); edge_port=$(free_port)
setsid redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null 2>&1 & pids+=($!)
sleep 0.3
setsid env PUSHWIRE_BRIDGE_TOKEN=$token RUST_LOG=warn "$bin" bridge --port "$bridge_port" --redis "redis://127.0.0.1:$redis_port" >/dev/null 2>&1 & pids+=($!)
setsid env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR=127.0.0.1:0 RUST_LOG=warn "$bin" serve --host 127.0.0.1 --port "$origin_port" --workers 2 --redis "redis://127.0.0.1:$redis_port" --demo false >/dev/null 2>&1 & origin=$!; pids+=($origin)
cp edge/build/index.js edge/build/index_bg.wasm "$work/"
cat > "$work/edge.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .edge), (name = "net", network = (allow = ["public", "private", "local"])) ],
  sockets = [ (name = "http", address = "127.0.0.1:$edge_port", http = (), service = "main") ],
);
const edge :Workerd.Worker = (
  modules = [ (name = "index.js", esModule = embed "index.js"), (name = "index_bg.wasm", wasm = embed "index_bg.wasm") ],
  compatibilityDate = "2026-04-01",
  bindings = [
    (name = "PUSHWIRE_APPS", text = "$apps"),
    (name = "PUSHWIRE_BRIDGE_URL", text = "http://127.0.0.1:$bridge_port"),
    (name = "PUSHWIRE_BRIDGE_TOKEN", text = "$token"),
  ],
  globalOutbound = "net",
);
CAPNP
setsid node_modules/.bin/workerd serve "$work/edge.capnp" >/dev/null 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$origin_port/health"; wait_http "http://127.0.0.1:$edge_port/health"

for path in origin edge; do
  if [ "$path" = origin ]; then trigger=http://127.0.0.1:$origin_port; else trigger=http://127.0.0.1:$edge_port; fi
  json=$(PUSHWIRE_APPS=$apps "$bench_bin" --url "http://127.0.0.1:$origin_port" --trigger-url "$trigger" \
    --server-pid "$origin" -c 1000 -k 10 -r 50 -d 8 --json 2>/dev/null)
  printf '{"server":"pushwire","scenario":"edge-path-%s","args":"-c 1000 -k 10 -r 50 -d 8","report":%s}\n' "$path" "$(echo "$json" | tr -d '\n')"
done

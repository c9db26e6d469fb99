#!/usr/bin/env bash
# Runs the BENCHMARKS.md scenarios with `pushwire-bench` against pushwire and,
# when its directory is given, against the Node peer (Node cluster + socket.io +
# redis-adapter + sticky, speaking the same contract), one server at a time on
# this machine, each on its own fresh redis-server. Prints one JSON line per run.
#
#   bash scripts/bench-compare.sh [NODE_PEER_DIR] > results.jsonl
#
# The server (and its Redis) and the generator are pinned to separate cores
# (bench-lib.sh: SERVER_CPUS, BENCH_CPUS; PIN=0 to let them float).
# Loopback only; every run is bounded in connections and time.
set -euo pipefail
cd "$(dirname "$0")/.."
peer_dir=${1:-}
source scripts/bench-lib.sh

bench() { # label server_pid url args...
  local label=$1 pid=$2 url=$3; shift 3
  local json
  json=$(PUSHWIRE_APPS=$apps "${on_bench[@]}" "$bench_bin" --url "$url" --server-pid "$pid" --source-ips 127.0.0.1-127.0.0.16 --json "$@" 2>/dev/null)
  printf '{"server":"%s","scenario":"%s","args":"%s","report":%s}\n' "$server" "$label" "$*" "$(echo "$json" | tr -d '\n')"
}

# Each group of scenarios gets a fresh server (and Redis): a server still
# draining the saturated fan-out steps would otherwise slow the next group down.
scenarios() { # start-function
  local start=$1 url
  "$start"; url="http://127.0.0.1:$port"
  # Fan-out steps up from 1 trigger/s, so each server's knee (p99 > 100 ms or loss) is found.
  for r in 1 2 5 10 25 50 100 200; do bench "fanout-10k-r$r" "$srv" "$url" -c 10000 -k 1 -r "$r" -d 8; done
  stop "$srv"; stop "$redis_pid"
  "$start"; url="http://127.0.0.1:$port"
  bench "channels-5k" "$srv" "$url" -c 10000 -k 5000 -r 500 -d 8
  # 10,000 channels, 1–2 subscribers each: as many connections as one process may open here.
  bench "channels-10k" "$srv" "$url" -c 19900 -k 10000 -r 500 -d 8
  stop "$srv"; stop "$redis_pid"
  "$start"; url="http://127.0.0.1:$port"
  for r in 2000 5000 10000; do bench "ingest-r$r" "$srv" "$url" -c 10 -k 10 -r "$r" -d 5; done
  stop "$srv"; stop "$redis_pid"
}

start_pushwire() {
  start_redis
  port=$(free_port)
  setsid "${on_server[@]}" env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR=127.0.0.1:0 RUST_LOG=warn "$bin" serve --host 127.0.0.1 --port "$port" --workers 2 --redis "redis://127.0.0.1:$redis_port" --demo false >/dev/null 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
}

start_peer() {
  start_redis
  port=$(free_port)
  setsid "${on_server[@]}" env PORT=$port WORKERS=2 REDIS_URL="redis://127.0.0.1:$redis_port" PUSHWIRE_APPS=$apps node "$peer_dir/server.js" >/dev/null 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
}

# Each idle measurement starts from a fresh server, so its baseline is its own.
idle() { # start-function
  for c in 1000 10000 15000; do
    "$1"; bench "idle-$c" "$srv" "http://127.0.0.1:$port" -c "$c" -r 0 -d 3; stop "$srv"; stop "$redis_pid"
  done
}

# The box's floor for fan-out, on the server's core: the sender CPU of one
# 80-byte write to a connected loopback socket (2,000 of them).
floor=$("${on_server[@]}" "$bench_bin" --write-floor -c 2000 --payload 80 -d 5 --json 2>/dev/null)
printf '{"server":"box","scenario":"write-floor","args":"-c 2000 --payload 80 -d 5","report":%s}\n' "$(echo "$floor" | tr -d '\n')"

# pushwire: 2 workers, Redis.
server=pushwire
idle start_pushwire
scenarios start_pushwire

# The Node peer: 2 workers, Redis.
if [ -n "$peer_dir" ]; then
  server=node-peer
  (cd "$peer_dir" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
  idle start_peer
  scenarios start_peer
fi

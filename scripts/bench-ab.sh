#!/usr/bin/env bash
# Compares another pushwire build with this one on BENCHMARKS.md's rows (b)
# fan-out (10,000 subscribers on one channel) and (d) ingest, with this
# checkout's pushwire-bench against both, each group on a fresh server and
# Redis, the two builds alternating. Prints one JSON line per run
# ("server": "before" for the other build, "after" for this one).
#
#   git worktree add /tmp/old <rev> && (cd /tmp/old && cargo build --release -p pushwire-origin)
#   bash scripts/bench-ab.sh /tmp/old/target/release/pushwire > ab.jsonl
#
# Loopback only; every run is bounded in connections and time.
set -euo pipefail
cd "$(dirname "$0")/.."
before_bin=${1:?usage: bench-ab.sh <other pushwire binary>}
source scripts/bench-lib.sh

start() { # server-binary
  start_redis
  port=$(free_port)
  setsid env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR=127.0.0.1:0 RUST_LOG=warn "$1" serve --host 127.0.0.1 --port "$port" --workers 2 --redis "redis://127.0.0.1:$redis_port" --demo false >/dev/null 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
}

bench() { # label args...
  local label=$1; shift
  local json
  json=$(PUSHWIRE_APPS=$apps "$bench_bin" --url "http://127.0.0.1:$port" --server-pid "$srv" --source-ips 127.0.0.1-127.0.0.16 --json "$@" 2>/dev/null)
  printf '{"server":"%s","scenario":"%s","args":"%s","report":%s}\n' "$server" "$label" "$*" "$(echo "$json" | tr -d '\n')"
}

pick() { # before|after
  server=$1
  if [ "$1" = before ]; then server_bin=$before_bin; else server_bin=$bin; fi
}

for build in before after; do
  pick "$build"; start "$server_bin"
  for r in 1 10 50 100 200; do bench "fanout-10k-r$r" -c 10000 -k 1 -r "$r" -d 8; done
  stop "$srv"; stop "$redis_pid"
done
for build in before after; do
  pick "$build"; start "$server_bin"
  for r in 2000 5000 10000; do bench "ingest-r$r" -c 10 -k 10 -r "$r" -d 5; done
  stop "$srv"; stop "$redis_pid"
done

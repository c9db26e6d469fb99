#!/usr/bin/env bash
# Pusher Channels protocol 7 beside Socket.IO on the same release build:
# idle capacity (server RSS per idle subscribed connection, through
# bench-capacity.sh with PROTOCOL set, a fresh server per row) and fan-out
# (FANOUT subscribers on one channel, RATE triggers/s for 8 s, a fresh server
# and Redis per row, 2 workers). Prints one JSON line per row.
#
#   bash scripts/bench-pusher.sh > pusher.jsonl
#   IDLE="10000 50000" FANOUT=2000 RATE=100 bash scripts/bench-pusher.sh
#
# The server (and its Redis) and the generator are pinned to separate cores
# (bench-lib.sh: SERVER_CPUS, BENCH_CPUS; PIN=0 to let them float).
# Loopback only; every run is bounded in connections and time.
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${IDLE:-10000}
fanout=${FANOUT:-2000}
rate=${RATE:-100}
hold=${HOLD:-60}

for n in $idle; do
  for protocol in socketio pusher; do
    PROTOCOL=$protocol HOLD=$hold bash scripts/bench-capacity.sh pushwire "$n"
  done
done

source scripts/bench-lib.sh
for protocol in socketio pusher; do
  start_redis
  port=$(free_port)
  setsid "${on_server[@]}" env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR=127.0.0.1:0 RUST_LOG=warn "$bin" serve --host 127.0.0.1 --port "$port" \
    --workers 2 --redis "redis://127.0.0.1:$redis_port" --demo false >/dev/null 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
  json=$(PUSHWIRE_APPS=$apps "${on_bench[@]}" "$bench_bin" --url "http://127.0.0.1:$port" --server-pid "$srv" --source-ips 127.0.0.1-127.0.0.16 \
    --protocol "$protocol" -c "$fanout" -k 1 -r "$rate" -d 8 --json 2>/dev/null)
  printf '{"protocol":"%s","scenario":"fanout-%s-r%s","report":%s}\n' "$protocol" "$fanout" "$rate" "$(echo "$json" | tr -d '\n')"
  stop "$srv"; stop "$redis_pid"
done

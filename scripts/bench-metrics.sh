#!/usr/bin/env bash
# What metrics cost: fan-out (2,000 subscribers on one channel, below the
# box's saturation, where 10,000 subscribers' runs vary by a third between
# identical runs) and BENCHMARKS.md's row (d) ingest, on one build, with
# metrics off (`PUSHWIRE_METRICS=false`) and on (served, and scraped every
# second as Prometheus would), alternating three times, each group on a fresh
# server and Redis.
# Prints one JSON line per run ("server": "metrics-off" or "metrics-on").
#
#   bash scripts/bench-metrics.sh > metrics.jsonl
#
# Loopback only; every run is bounded in connections and time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh

start() { # metrics: true|false
  start_redis
  port=$(free_port)
  metrics_port=$(free_port)
  setsid env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS="$1" \
    PUSHWIRE_METRICS_ADDR="127.0.0.1:$metrics_port" RUST_LOG=warn "$bin" serve --host 127.0.0.1 \
    --port "$port" --workers 2 --redis "redis://127.0.0.1:$redis_port" --demo false >/dev/null 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
  scraper=""
  if [ "$1" = true ]; then
    wait_http "http://127.0.0.1:$metrics_port/metrics"
    setsid bash -c "while curl -fsS -o /dev/null http://127.0.0.1:$metrics_port/metrics; do sleep 1; done" &
    scraper=$!; pids+=("$scraper")
  fi
}

finish() {
  [ -z "$scraper" ] || stop "$scraper"
  stop "$srv"; stop "$redis_pid"
}

bench() { # label args...
  local label=$1; shift
  local json
  json=$(PUSHWIRE_APPS=$apps "$bench_bin" --url "http://127.0.0.1:$port" --server-pid "$srv" --source-ips 127.0.0.1-127.0.0.16 --json "$@" 2>/dev/null)
  printf '{"server":"%s","scenario":"%s","args":"%s","report":%s}\n' "$server" "$label" "$*" "$(echo "$json" | tr -d '\n')"
}

for round in 1 2 3; do
  for metrics in false true; do
    if [ "$metrics" = true ]; then server=metrics-on; else server=metrics-off; fi
    start "$metrics"
    for r in 50 100; do bench "fanout-2k-r$r" -c 2000 -k 1 -r "$r" -d 8; done
    finish
    start "$metrics"
    for r in 2000 5000; do bench "ingest-r$r" -c 10 -k 10 -r "$r" -d 5; done
    finish
  done
done

#!/usr/bin/env bash
# Webhooks under channel churn, and what webhooks cost fan-out, on one build
# (2 workers, the embedded broker unless SERVER_ARGS says otherwise):
#
# 1. Churn: `pushwire-bench --webhook-churn R` occupies R fresh channels a
#    second (each held 1 s, then vacated) for DURATION s, at each of STEPS,
#    with webhooks on (the server's `--webhook-url` is the generator's own
#    receiver, `--webhook-listen`) and off (no webhook configured: the same
#    churn, for its CPU), alternating per group, ROUNDS rounds, each group on
#    a fresh server.
# 2. Fan-out A/B: 2,000 subscribers on one channel at 100 triggers/s (below
#    the box's saturation, as in BENCHMARKS.md's "What metrics cost"), webhooks
#    off and on, alternating, FANOUT_ROUNDS rounds, a fresh server per group;
#    then the same fan-out with a SIDE_CHURN channels/s churn running alongside
#    in a second generator, so that the webhooks have work during the fan-out.
#
# Prints one JSON line per run ("server": "webhooks-off" or "webhooks-on") on
# stdout; on stderr, the server's warnings and errors (with the run they fell
# in), each webhooks-on server's webhook metrics, and markdown tables.
#
#   bash scripts/bench-webhooks.sh > webhooks.jsonl
#   REDIS=1 bash scripts/bench-webhooks.sh > redis.jsonl
#
# REDIS=1: each server gets a fresh redis-server of its own (`--redis`), whose
# CPU the generator reports too (`--redis-cpu`): webhooks then wait in Redis
# and every worker sends.
# SERVER_ARGS: extra `pushwire serve` flags for every server (word-split).
# STEPS (default "100 500 1000 2000 4000"), DURATION (8), ROUNDS (2),
# FANOUT_ROUNDS (3), SIDE_CHURN (500) size the runs.
# Loopback only; every run is bounded in connections and time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
read -r -a server_args <<<"${SERVER_ARGS:-}"
read -r -a steps <<<"${STEPS:-100 500 1000 2000 4000}"
duration=${DURATION:-8}
rounds=${ROUNDS:-2}
fanout_rounds=${FANOUT_ROUNDS:-3}
side_churn=${SIDE_CHURN:-500}
runs=$work/runs.jsonl
: >"$runs"

start() { # on|off
  server=webhooks-$1
  port=$(free_port)
  metrics_port=$(free_port)
  local webhook_port hook=()
  webhook_port=$(free_port)
  listen=()
  if [ "$1" = on ]; then
    hook=(--webhook-url "http://127.0.0.1:$webhook_port/")
    listen=(--webhook-listen "127.0.0.1:$webhook_port")
  fi
  redis=() redis_cpu=()
  if [ "${REDIS:-0}" = 1 ]; then
    start_redis
    redis=(--redis "redis://127.0.0.1:$redis_port")
    redis_cpu=(--redis-cpu "127.0.0.1:$redis_port")
  fi
  server_log=$work/server-$RANDOM.log
  setsid env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR="127.0.0.1:$metrics_port" \
    RUST_LOG=warn "$bin" serve --host 127.0.0.1 --port "$port" --workers 2 --demo false \
    "${hook[@]}" "${redis[@]}" "${server_args[@]}" >"$server_log" 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
}

finish() {
  if [ "$server" = webhooks-on ]; then
    curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep '^pushwire_webhook' | sed "s/^/[$server metrics] /" >&2 || true
  fi
  stop "$srv"
  if [ "${REDIS:-0}" = 1 ]; then stop "$redis_pid"; fi
}

# The generator against the current server: one JSON line, on stdout and into $runs.
bench() { # label args...
  local label=$1; shift
  local json log_from
  log_from=$(($(wc -l <"$server_log") + 1))
  json=$(PUSHWIRE_APPS=$apps "$bench_bin" --url "http://127.0.0.1:$port" --server-pid "$srv" \
    --source-ips 127.0.0.1-127.0.0.16 "${redis_cpu[@]}" --json "$@" 2>/dev/null)
  tail -n +"$log_from" "$server_log" | sed "s/^/[$server $label] /" >&2
  printf '{"server":"%s","scenario":"%s","args":"%s","report":%s}\n' "$server" "$label" "$*" \
    "$(echo "$json" | tr -d '\n')" | tee -a "$runs"
}

# A fan-out run with a churn generator running alongside (it takes the
# webhooks, when on); the churn starts first and ends after the fan-out's
# triggers, so their whole window has churn in it.
alongside() { # label fanout-args...
  local label=$1; shift
  local side
  PUSHWIRE_APPS=$apps "$bench_bin" --url "http://127.0.0.1:$port" --server-pid "$srv" \
    --source-ips 127.0.0.1-127.0.0.16 --json --webhook-churn "$side_churn" -d $((duration + 4)) \
    "${listen[@]}" >"$work/side.json" 2>/dev/null &
  side=$!; pids+=("$side")
  # The churn's sockets connect in well under a second; then the fan-out's do.
  sleep 1
  bench "$label" "$@"
  wait "$side" || true
  printf '{"server":"%s","scenario":"%s","args":"%s","report":%s}\n' "$server" "churn-$side_churn-alongside" \
    "--webhook-churn $side_churn -d $((duration + 4))" "$(tr -d '\n' <"$work/side.json")" | tee -a "$runs"
}

for round in $(seq "$rounds"); do
  for webhooks in off on; do
    start "$webhooks"
    for rate in "${steps[@]}"; do bench "churn-$rate" --webhook-churn "$rate" -d "$duration" "${listen[@]}"; done
    finish
  done
done
for round in $(seq "$fanout_rounds"); do
  for webhooks in off on; do
    start "$webhooks"
    bench "fanout-2k-r100" -c 2000 -k 1 -r 100 -d "$duration" "${listen[@]}"
    finish
    start "$webhooks"
    alongside "fanout-2k-r100+churn-$side_churn" -c 2000 -k 1 -r 100 -d "$duration"
    finish
  done
done

python3 - "$runs" >&2 <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
on = lambda r: r["server"] == "webhooks-on"
med = statistics.median

print("\n### Churn\n")
print("| channels/s | webhooks | made/s | transitions | matched | missing | duplicates | invalid | events/s steady "
      "| p50 ms | p99 ms | max ms | ack p99 ms (sub / unsub) | server CPU s | µs/transition | generator CPU s |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
acks = lambda c: (f"{c['subscribe_ack_latency']['p99_ms']:.1f} / {c['unsubscribe_ack_latency']['p99_ms']:.1f}"
                  if "subscribe_ack_latency" in c else "–")
# Channels occupied a second as made, not as asked: the last subscribes come
# about one hold before the churn's end, later when the server falls behind.
made = lambda c: c["channels_occupied"] / max(c["churn_seconds"] - c["hold_seconds"], 1e-9)
churn = [r for r in runs if r["scenario"].startswith("churn-") and "alongside" not in r["scenario"]]
for r in sorted(churn, key=lambda r: (r["report"]["channels_per_second"], r["server"])):
    c = r["report"]
    w = c.get("webhooks")
    t = c["channels_occupied"] + c["channels_vacated"]
    if w:
        l = w["latency"]
        steady = "–" if w["events_per_second_steady"] is None else f"{w['events_per_second_steady']:,.0f}"
        hooks = (f"{w['events_matched']:,} | {w['missing']:,} | {w['duplicates']:,} | {w['invalid_signatures']} "
                 f"| {steady} | {l['p50_ms']:.1f} | {l['p99_ms']:.1f} | {l['max_ms']:.1f}")
    else:
        hooks = "– | – | – | – | – | – | – | –"
    print(f"| {c['channels_per_second']:,.0f} | {'on' if w else 'off'} | {made(c):,.0f} | {t:,} | {hooks} | {acks(c)} "
          f"| {c['server_cpu_seconds']:.2f} | {c['server_cpu_us_per_transition']:.1f} | {c['bench_cpu_seconds']:.2f} |")

print("\n### Churn: server CPU, webhooks off against on (median of the rounds)\n")
print("| channels/s | server CPU s off | on | on ÷ off |")
print("|---:|---|---|---:|")
for rate in sorted({r["report"]["channels_per_second"] for r in churn}):
    off_cpu = [r["report"]["server_cpu_seconds"] for r in churn if r["report"]["channels_per_second"] == rate and not on(r)]
    on_cpu = [r["report"]["server_cpu_seconds"] for r in churn if r["report"]["channels_per_second"] == rate and on(r)]
    if off_cpu and on_cpu:
        print(f"| {rate:,.0f} | {', '.join(f'{x:.2f}' for x in off_cpu)} | {', '.join(f'{x:.2f}' for x in on_cpu)} "
              f"| {100 * (med(on_cpu) / med(off_cpu) - 1):+.1f} % |")

print("\n### Fan-out, webhooks off against on\n")
print("| scenario | µs/msg off | µs/msg on | median on ÷ off | p50 ms off / on | p99 ms off / on | lost off / on | webhooks received (on) |")
print("|---|---|---|---:|---|---|---|---|")
fan = [r for r in runs if r["scenario"].startswith("fanout-")]
us = lambda r: 1e6 * r["report"]["server_cpu_seconds_triggering"] / max(r["report"]["delivered"], 1)
for scenario in dict.fromkeys(r["scenario"] for r in fan):
    rows = [r for r in fan if r["scenario"] == scenario]
    off_r, on_r = [r for r in rows if not on(r)], [r for r in rows if on(r)]
    if not off_r or not on_r:
        continue
    lat = lambda rs, p: ", ".join(f"{r['report']['latency'][p]:.1f}" for r in rs)
    lost = lambda rs: ", ".join(str(r["report"]["lost"]) for r in rs)
    recv = ", ".join(str((r["report"].get("webhooks") or {}).get("events", "–")) for r in on_r)
    print(f"| {scenario} | {', '.join(f'{us(r):.2f}' for r in off_r)} | {', '.join(f'{us(r):.2f}' for r in on_r)} "
          f"| {100 * (med(map(us, on_r)) / med(map(us, off_r)) - 1):+.1f} % | {lat(off_r, 'p50_ms')} / {lat(on_r, 'p50_ms')} "
          f"| {lat(off_r, 'p99_ms')} / {lat(on_r, 'p99_ms')} | {lost(off_r)} / {lost(on_r)} | {recv} |")

side = [r for r in runs if r["scenario"].endswith("-alongside")]
if side:
    print("\n### The churn alongside the fan-out\n")
    print("| webhooks | transitions | matched | missing | duplicates | p50 ms | p99 ms | max ms | ack p99 ms (sub / unsub) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in side:
        c, w = r["report"], r["report"].get("webhooks")
        hooks = (f"{w['events_matched']:,} | {w['missing']:,} | {w['duplicates']:,} | {w['latency']['p50_ms']:.1f} "
                 f"| {w['latency']['p99_ms']:.1f} | {w['latency']['max_ms']:.1f}") if w else "– | – | – | – | – | –"
        print(f"| {'on' if w else 'off'} | {c['channels_occupied'] + c['channels_vacated']:,} | {hooks} | {acks(c)} |")
EOF

#!/usr/bin/env bash
# One Redis against a 3-shard Redis Cluster (3 primaries, 3 replicas), same
# build, same generator, run after run on one machine: BENCHMARKS.md's
# many-channel scenario (10,000 channels) and its ingest steps (row (d))
# against a pushwire origin (2 workers) on each. Every Redis node's CPU comes
# from `INFO cpu` (`pushwire-bench --redis-cpu`), per phase, so the runs show
# how the work spreads over the shards. After each run the script also counts,
# per primary, the channels that run wrote to (their hash tags, from the keys),
# and notes whether the primaries are still the ones it started with (a
# failover during a run would make its row meaningless); once each origin is
# up, it notes which primaries hold its workers' own directory keys
# (`pushwire:v2:node:{<node>}:…`, one slot per worker).
# Prints one JSON line per run ("server": "redis" or "cluster") on stdout, the
# origin's warnings and errors (with the run they fell in) and a markdown table
# of the runs on stderr.
#
#   bash scripts/bench-cluster.sh > cluster.jsonl
#
# ROUNDS (default 2) repeats everything, the two setups alternating within
# each group of scenarios, so a disturbed row shows against its twin.
# CLUSTER_REPLICAS (default 1) is the replicas per primary; 0 shows what
# feeding the replicas costs the primaries.
# Loopback only; every run is bounded in connections and time; every Redis
# node is started here, on free ports, and stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
rounds=${ROUNDS:-2}
replicas_per_primary=${CLUSTER_REPLICAS:-1}
runs=$work/runs.jsonl
: >"$runs"

# N loopback ports whose cluster bus ports (port + 10000) are free as well,
# none of them another's bus port. The sockets stay bound until all N are
# chosen, so they differ.
cluster_ports() { # N
  python3 - "$1" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
    port = s.getsockname()[1]
    if port + 10000 > 65535 or any(port in (p, p + 10000) or port + 10000 == p for p in ports):
        continue
    bus = socket.socket()
    try:
        bus.bind(("127.0.0.1", port + 10000))
    except OSError:
        continue
    finally:
        bus.close()
    ports.append(port)
print(*ports)
EOF
}

# Runs the command every 0.1 s until it succeeds, for up to 30 s.
wait_for() { # description command...
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2; return 1
}
cluster_ok() { redis-cli -p "$1" cluster info | grep -q '^cluster_state:ok'; }
replica_synced() { redis-cli -p "$1" info replication | grep -q '^master_link_status:up'; }

# The live primaries' ports, ordered by the first slot each owns (shard 1 owns
# slot 0), as the node on port $1 sees them.
primaries_of() {
  redis-cli -p "$1" cluster nodes |
    awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { split($2, a, "[:@]"); split($9, s, "-"); print s[1], a[2] }' |
    sort -n | awk '{ print $2 }' | paste -sd' '
}

# A fresh single redis-server (bench-lib's), measured alone.
start_single() {
  start_redis
  nodes=("$redis_pid"); primaries=("$redis_port"); replicas=()
  redis_url=redis://127.0.0.1:$redis_port
}

# Six redis-servers made a cluster of three primaries with one replica each
# (CLUSTER_REPLICAS) by `redis-cli --cluster create`, the way
# tests/src/redis_cluster.rs does.
# The node timeout is Redis's default (15 s), not the tests' 1 s: on two
# saturated cores a node may not answer its bus for a second, and a failover
# in the middle of a run is not what is measured here.
start_cluster() {
  local ports port
  read -r -a ports <<<"$(cluster_ports $((3 * (1 + replicas_per_primary))))"
  nodes=()
  for port in "${ports[@]}"; do
    mkdir -p "$work/node-$port"
    setsid redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/node-$port" \
      --cluster-enabled yes --cluster-config-file "$work/node-$port/nodes.conf" --cluster-node-timeout 15000 \
      --repl-diskless-sync-delay 0 >"$work/redis-$port.log" 2>&1 &
    nodes+=("$!"); pids+=("$!")
  done
  for port in "${ports[@]}"; do wait_for "redis-server on $port" redis-cli -p "$port" ping; done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas "$replicas_per_primary" --cluster-yes \
    >"$work/cluster-create.log" 2>&1 || { cat "$work/cluster-create.log" >&2; return 1; }
  for port in "${ports[@]}"; do wait_for "cluster_state:ok on $port" cluster_ok "$port"; done
  read -r -a primaries <<<"$(primaries_of "${ports[0]}")"
  [ "${#primaries[@]}" -eq 3 ] || { echo "expected 3 primaries, got: ${primaries[*]}" >&2; return 1; }
  replicas=()
  for port in "${ports[@]}"; do
    [[ " ${primaries[*]} " == *" $port "* ]] || replicas+=("$port")
  done
  for port in "${replicas[@]}"; do wait_for "replica $port to sync" replica_synced "$port"; done
  redis_url="redis+cluster://$(printf '127.0.0.1:%s,' "${ports[@]:0:3}" | sed 's/,$//')"
}

# The origin, logging warnings and errors to a file that each run's lines are
# taken from.
start_origin() {
  port=$(free_port)
  origin_log=$work/origin-$RANDOM.log
  setsid env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR=127.0.0.1:0 RUST_LOG=warn \
    "$bin" serve --host 127.0.0.1 --port "$port" --workers 2 --redis "$redis_url" --demo false >"$origin_log" 2>&1 &
  srv=$!; pids+=("$srv")
  wait_http "http://127.0.0.1:$port/health"
}

start() { # single|cluster
  server=$1
  if [ "$1" = single ]; then server=redis; start_single; else start_cluster; fi
  start_origin
  locate_workers
}

finish() {
  stop "$srv"
  local pid
  for pid in "${nodes[@]}"; do stop "$pid"; done
  rm -f "$work"/tags-*
}

# The hash tags (`{app:channel}`) of the pushwire keys on the node on $1.
tags_on() { redis-cli -p "$1" --scan --pattern 'pushwire:v2:{*' | sed -n 's/^pushwire:v2:\({[^}]*}\).*/\1/p' | sort -u; }

# The port of the primary owning slot $1.
slot_owner() {
  redis-cli -p "${primaries[0]}" cluster nodes | awk -v slot="$1" '
    $3 ~ /master/ && $3 !~ /fail/ { for (i = 9; i <= NF; i++) { n = split($i, r, "-"); if (n == 1) r[2] = r[1]
      if (slot + 0 >= r[1] + 0 && slot + 0 <= r[2] + 0) { split($2, a, "[:@]"); print a[2] } } }'
}

# How many of the origin's workers keep their own directory keys (the socket
# counts every subscribe updates, rewritten whole at each heartbeat) on each
# primary, into `workers`. Read once the origin is up, from the workers' first
# heartbeats in `pushwire:v2:nodes`: the keys themselves are gone whenever no
# subscriber is connected, and a worker may later drop out of that set (see
# "A worker's heartbeat" in BENCHMARKS.md).
workers_listed() { [ "$(redis-cli -c -p "${primaries[0]}" zcard pushwire:v2:nodes)" = 2 ]; }
locate_workers() {
  local id node count ids
  wait_for "both workers' heartbeats" workers_listed
  ids=$(redis-cli -c -p "${primaries[0]}" zrange pushwire:v2:nodes 0 -1)
  workers=()
  for node in "${primaries[@]}"; do
    count=0
    for id in $ids; do
      if [ "$server" = redis ] || [ "$(slot_owner "$(redis-cli -p "$node" cluster keyslot "pushwire:v2:node:{$id}:subs")")" = "$node" ]; then
        count=$((count + 1))
      fi
    done
    workers+=("$count")
  done
}

bench() { # label args...
  local label=$1; shift
  local node json log_from channels=() failed_over=false now
  local cpu_args=()
  for node in "${primaries[@]}" "${replicas[@]}"; do cpu_args+=(--redis-cpu "127.0.0.1:$node"); done
  log_from=$(($(wc -l <"$origin_log") + 1))
  json=$(PUSHWIRE_APPS=$apps "$bench_bin" --url "http://127.0.0.1:$port" --server-pid "$srv" \
    --source-ips 127.0.0.1-127.0.0.16 --json "${cpu_args[@]}" "$@" 2>/dev/null)
  # Channels this run wrote to, per primary: tags not seen after earlier runs
  # on the same Redis (each run's channel names are its own).
  for node in "${primaries[@]}"; do
    touch "$work/tags-$node"
    tags_on "$node" >"$work/tags-$node.now"
    channels+=("$(comm -13 "$work/tags-$node" "$work/tags-$node.now" | wc -l)")
    mv "$work/tags-$node.now" "$work/tags-$node"
  done
  if [ "$server" = cluster ]; then
    now=$(primaries_of "${primaries[0]}")
    [ "$now" = "${primaries[*]}" ] || failed_over=true
  fi
  tail -n +"$log_from" "$origin_log" | sed "s/^/[$server $label] /" >&2
  printf '%s' "$json" >"$work/report.json"
  python3 - "$work/report.json" "$server" "$label" "$*" "${#primaries[@]}" \
    "$(tail -n +"$log_from" "$origin_log" | wc -l)" "$failed_over" "${channels[*]}" "${workers[*]}" <<'EOF' | tee -a "$runs"
import json, sys
report_file, server, label, args, n, log_lines, failed_over, channels, workers = sys.argv[1:]
report = json.load(open(report_file))
n = int(n)
nodes = report["redis_cpu"]
print(json.dumps({
    "server": server, "scenario": label, "args": args,
    # The primaries in slot order (shard 1 first), then the replicas.
    "primaries": [x["node"] for x in nodes[:n]], "replicas": [x["node"] for x in nodes[n:]],
    "channels_per_primary": [int(c) for c in channels.split()],
    "workers_per_primary": [int(c) for c in workers.split()],
    "origin_log_lines": int(log_lines), "failed_over": failed_over == "true",
    "report": report,
}))
EOF
}

for round in $(seq "$rounds"); do
  # Many channels: 19,900 connections (as many as one generator process may
  # open here) over 10,000 channels, at row (c)'s 500 triggers/s, then at
  # 1,250/s, where the 10,000 triggers reach every channel once.
  for setup in single cluster; do
    start "$setup"
    bench "channels-10k-r500" -c 19900 -k 10000 -r 500 -d 8
    bench "channels-10k-r1250" -c 19900 -k 10000 -r 1250 -d 8
    finish
  done
  # Ingest, row (d): 10 subscribers on 10 channels, stepped up, after 8 s
  # with no triggers (what Redis costs with nothing to do).
  for setup in single cluster; do
    start "$setup"
    bench "idle-8s" -c 10 -k 10 -r 0 -d 8
    for r in 2000 5000 10000; do bench "ingest-r$r" -c 10 -k 10 -r "$r" -d 5; done
    finish
  done
done

# The table BENCHMARKS.md shows, from the runs above. Redis CPU per primary is
# given for the whole run (subscribers connecting, then triggers) and for the
# trigger phase alone.
python3 - "$runs" >&2 <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
fmt = lambda v: "?" if v is None else f"{v:.2f}"
total = lambda vs: None if None in vs else sum(vs)
def whole(x):
    c, t = x["cpu_seconds_connecting"], x["cpu_seconds_triggering"]
    return None if c is None or t is None else c + t
print("| scenario | Redis | accepted/s | trigger p99 ms | delivery p50 ms | delivery p99 ms | lost "
      "| Redis CPU s per primary, whole run | total | per primary, triggering | total | replicas, whole run "
      "| channels per primary | workers' keys per primary | origin CPU s |")
print("|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---|---|---:|")
for r in runs:
    rep, n = r["report"], len(r["primaries"])
    prim, repl = rep["redis_cpu"][:n], rep["redis_cpu"][n:]
    run = [whole(x) for x in prim]
    trig = [x["cpu_seconds_triggering"] for x in prim]
    note = " (failed over)" if r["failed_over"] else ""
    print(f"| {r['scenario']} | {'single' if r['server'] == 'redis' else '3 shards'}{note} "
          f"| {rep['triggers_accepted'] / max(rep['trigger_seconds'], 1e-9):,.0f} | {rep['trigger_latency']['p99_ms']:.1f} "
          f"| {rep['latency']['p50_ms']:.1f} | {rep['latency']['p99_ms']:.1f} | {rep['lost']:,} "
          f"| {' / '.join(map(fmt, run))} | {fmt(total(run))} "
          f"| {' / '.join(map(fmt, trig))} | {fmt(total(trig))} "
          f"| {fmt(total([whole(x) for x in repl])) if repl else '–'} "
          f"| {' / '.join(f'{c:,}' for c in r['channels_per_primary'])} "
          f"| {' / '.join(map(str, r['workers_per_primary']))} "
          f"| {rep['server_cpu_seconds_connecting'] + rep['server_cpu_seconds_triggering']:.2f} |")
EOF

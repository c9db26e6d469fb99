#!/usr/bin/env bash
# Idle capacity beyond one process's open-file limit: starts a server with
# enough workers that none holds more than PER_PROCESS connections, opens
# CONNECTIONS idle, subscribed WebSocket connections with as many
# `pushwire-bench` processes (each from its own two loopback addresses), and
# measures the server's process tree once every connection is established.
# Prints one JSON line.
#
#   bash scripts/bench-capacity.sh pushwire CONNECTIONS
#   bash scripts/bench-capacity.sh node CONNECTIONS NODE_PEER_DIR
#
# BENCH_ARGS adds arguments to every `pushwire-bench` (e.g. --browser-headers);
# PROTOCOL=pusher opens Pusher Channels protocol 7 connections instead of
# Socket.IO ones (pushwire only; default socketio).
# Loopback only; bounded: the bench processes hold their connections for
# HOLD seconds (default 150) and exit.
set -euo pipefail
cd "$(dirname "$0")/.."
server=$1 connections=$2 peer_dir=${3:-}
per_process=${PER_PROCESS:-17000}
hold=${HOLD:-150}
protocol=${PROTOCOL:-socketio}
source scripts/bench-lib.sh
processes=$(( (connections + per_process - 1) / per_process ))
workers=$(( processes < 2 ? 2 : processes ))

redis_port=$(free_port)
setsid "${on_server[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --maxclients 1000 >/dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

port=$(free_port)
case $server in
  pushwire)
    setsid "${on_server[@]}" env PUSHWIRE_APPS=$apps PUSHWIRE_MAX_CONNECTIONS_PER_IP=0 PUSHWIRE_METRICS_ADDR=127.0.0.1:0 RUST_LOG=warn "$bin" serve --host 127.0.0.1 --port "$port" \
      --workers "$workers" --redis "redis://127.0.0.1:$redis_port" --demo false >/dev/null 2>&1 & ;;
  node)
    (cd "$peer_dir" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
    setsid "${on_server[@]}" env PORT=$port WORKERS=$workers REDIS_URL="redis://127.0.0.1:$redis_port" PUSHWIRE_APPS=$apps \
      node "$peer_dir/server.js" >/dev/null 2>&1 & ;;
  *) echo "server: pushwire or node" >&2; exit 2 ;;
esac
srv=$!; pids+=("$srv")
wait_http "http://127.0.0.1:$port/health"
sleep 1 # let the workers finish starting before the baseline (not a synchronisation)

# The server's process group: its RSS (KiB) and CPU ticks.
rss_kib() { ps -o rss= --sid "$srv" | awk '{s+=$1} END {print s}'; }
cpu_ticks() { for p in $(ps -o pid= --sid "$srv"); do awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s+=$1} END {print s}'; }
established() { ss -Htn state established "( sport = :$port )" | wc -l; }

rss_before=$(rss_kib) cpu_before=$(cpu_ticks)
started=$(date +%s.%N)
gens=()
for g in $(seq 0 $((processes - 1))); do
  n=$(( g == processes - 1 ? connections - g * per_process : per_process ))
  PUSHWIRE_APPS=$apps "${on_bench[@]}" "$bench_bin" --url "http://127.0.0.1:$port" --source-ips "127.0.0.$((2 * g + 1))-127.0.0.$((2 * g + 2))" \
    -c "$n" -k 1 -r 0 -d "$hold" --protocol "$protocol" --json ${BENCH_ARGS:-} >"$work/gen-$g.json" 2>/dev/null &
  gens+=("$!")
done
# Poll (with a deadline) until every connection is established on the server side.
deadline=$(( $(date +%s) + hold ))
while [ "$(established)" -lt "$connections" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.5; done
held=$(established)
finished=$(date +%s.%N)
rss_after=$(rss_kib) cpu_after=$(cpu_ticks)
for g in "${gens[@]}"; do wait "$g" || true; done
python3 - "$work" "$server" "$connections" "$workers" "$held" "$rss_before" "$rss_after" \
  "$cpu_before" "$cpu_after" "$(getconf CLK_TCK)" "$started" "$finished" "${BENCH_ARGS:-}" "$protocol" <<'EOF'
import glob, json, sys
work, server, conns, workers, held, rss0, rss1, cpu0, cpu1, tick, t0, t1, _, protocol = sys.argv[1:]
held, rss0, rss1 = int(held), int(rss0), int(rss1)
failures = sum(json.load(open(f))["connect_failures"] for f in glob.glob(work + "/gen-*.json"))
print(json.dumps({
    "server": server, "protocol": protocol, "bench_args": sys.argv[13], "connections": int(conns), "workers": int(workers), "held": held,
    "connect_failures": failures, "connect_seconds": round(float(t1) - float(t0), 1),
    "rss_before_mib": round(rss0 / 1024, 1), "rss_held_mib": round(rss1 / 1024, 1),
    "kib_per_connection": round((rss1 - rss0) / max(held, 1), 1),
    "cpu_seconds_connecting": round((int(cpu1) - int(cpu0)) / int(tick), 2),
}))
EOF

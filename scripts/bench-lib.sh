# Sourced by the bench-*.sh scripts (from the repository root): a scratch
# directory, process-group cleanup on exit, the release binaries (the server and
# the load generator), and helpers.
# Every process a script starts goes into `pids` (started with `setsid`, so its
# whole group is stopped); nothing else is ever signalled.
apps=1000001:app-key:app-secret
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q -p pushwire-origin -p pushwire-bench
# Where cargo put them: ./target unless CARGO_TARGET_DIR (or a cargo config) says otherwise.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target_dir/release/pushwire
bench_bin=$target_dir/release/pushwire-bench
ulimit -n "$(ulimit -Hn)"

# The pinned rig: on a machine with 2 or more CPUs the server under test and
# its Redis run on SERVER_CPUS (default 0) and the load generator on BENCH_CPUS
# (default 1), so neither's work lands on the other's core, and the generator's
# report says when it was the bottleneck (`generator.bound`). PIN=0 lets both
# float over every CPU, as the figures before the pinned rig were taken.
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  on_server=(taskset -c "${SERVER_CPUS:-0}")
  on_bench=(taskset -c "${BENCH_CPUS:-1}")
else
  on_server=()
  on_bench=()
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "not ready: $1" >&2; return 1; }
# A fresh redis-server on a free port in the scratch directory (its port in `redis_port`).
start_redis() {
  redis_port=$(free_port)
  setsid "${on_server[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null 2>&1 &
  redis_pid=$!; pids+=("$redis_pid")
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
}
# Stops a process group this script started and waits for it.
stop() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

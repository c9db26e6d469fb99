#!/usr/bin/env python3
"""Turns the JSON lines of scripts/bench-compare.sh and scripts/bench-edge.sh
into the markdown tables of BENCHMARKS.md.

    python3 scripts/bench-table.py results.jsonl [edge.jsonl]
"""
import json
import sys

runs = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                d = json.loads(line)
                runs[(d["server"], d["scenario"])] = d["report"]


def get(server, scenario):
    return runs.get((server, scenario))


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "–"


def kib(r):
    return r["server_rss_per_connection_bytes"] / 1024


def mib(b):
    return b / (1024 * 1024)


print("### (a) Idle capacity: server RSS per connection (fresh server for each row)\n")
print("| connections | pushwire KiB/conn | Node KiB/conn | Node ÷ pushwire | pushwire RSS total | Node RSS total | pushwire CPU s to connect | Node CPU s to connect |")
print("|---|---|---|---|---|---|---|---|")
for c in (1000, 10000, 15000):
    p, n = get("pushwire", f"idle-{c}"), get("node-peer", f"idle-{c}")
    if not p:
        continue
    ns = (f"{kib(n):.1f}", f"{mib(n['server_rss_connected_bytes']):.0f} MiB", f"{n['server_cpu_seconds_connecting']:.2f}") if n else ("–", "–", "–")
    print(f"| {p['connected']:,} | {kib(p):.1f} | {ns[0]} | {ratio(kib(n), kib(p)) if n else '–'} | "
          f"{mib(p['server_rss_connected_bytes']):.0f} MiB | {ns[1]} | {p['server_cpu_seconds_connecting']:.2f} | {ns[2]} |")


def delivery_row(label, p, n):
    def cells(r):
        if not r:
            return ["–"] * 5
        return [f"{r['delivered_per_second']:,.0f}", f"{r['latency']['p50_ms']:.1f}", f"{r['latency']['p99_ms']:.1f}",
                f"{r['lost']:,}", f"{r['triggers_accepted']}/{r['triggers_sent']}"]
    pc, nc = cells(p), cells(n)
    r = ratio(p["delivered_per_second"], n["delivered_per_second"]) if p and n else "–"
    print(f"| {label} | " + " | ".join(pc) + " | " + " | ".join(nc) + f" | {r} |")


header = ("| {} | pushwire msgs/s | p50 ms | p99 ms | lost | triggers ok | Node msgs/s | p50 ms | p99 ms | lost | triggers ok | msgs/s ratio |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
print("\n### (b) Fan-out: one channel, 10,000 WebSocket subscribers, 8 s per step\n")
print(header.format("triggers/s"))
FANOUT_RATES = (1, 2, 5, 10, 25, 50, 100, 200)
for rate in FANOUT_RATES:
    p, n = get("pushwire", f"fanout-10k-r{rate}"), get("node-peer", f"fanout-10k-r{rate}")
    if p or n:
        delivery_row(str(rate), p, n)


def knee(server, within_100ms):
    """The last step before the first with a loss, a refused trigger or (when
    `within_100ms`) a p99 over 100 ms."""
    last = None
    for rate in FANOUT_RATES:
        r = get(server, f"fanout-10k-r{rate}")
        if not r:
            break
        if (within_100ms and r["latency"]["p99_ms"] > 100) or r["lost"] or r["triggers_accepted"] < r["triggers_sent"]:
            break
        last = (rate, r)
    return last


def knee_text(k):
    return f"{k[1]['delivered_per_second']:,.0f} msgs/s at {k[0]} triggers/s" if k else "below the first step"


for within_100ms, label in ((True, "Knee (last step with p99 ≤ 100 ms, nothing lost, every trigger accepted)"),
                            (False, "Last step with nothing lost and every trigger accepted, whatever the latency")):
    pk, nk = knee("pushwire", within_100ms), knee("node-peer", within_100ms)
    both = ratio(pk[1]["delivered_per_second"], nk[1]["delivered_per_second"]) if pk and nk else "–"
    print(f"\n{label}: pushwire {knee_text(pk)}; Node peer {knee_text(nk)}; ratio {both}.")

print("\n### (c) Many channels: 500 triggers/s for 8 s\n")
print(header.format("scenario"))
delivery_row("5,000 channels × 2", get("pushwire", "channels-5k"), get("node-peer", "channels-5k"))
delivery_row("10,000 channels × 1–2", get("pushwire", "channels-10k"), get("node-peer", "channels-10k"))

print("\n### (d) Ingest: signed triggers/s accepted by the trigger API (10 subscribers, 5 s per step)\n")
print("| offered triggers/s | pushwire accepted/s | trigger p50 ms | trigger p99 ms | Node accepted/s | trigger p50 ms | trigger p99 ms | accepted/s ratio |")
print("|---|---|---|---|---|---|---|---|")
for rate in (2000, 5000, 10000):
    p, n = get("pushwire", f"ingest-r{rate}"), get("node-peer", f"ingest-r{rate}")
    def accepted(r):
        return r["triggers_accepted"] / r["trigger_seconds"] if r else None

    def cells(r):
        if not r:
            return ["–"] * 3
        return [f"{accepted(r):,.0f}", f"{r['trigger_latency']['p50_ms']:.2f}", f"{r['trigger_latency']['p99_ms']:.2f}"]
    if p or n:
        print(f"| {rate:,} | " + " | ".join(cells(p)) + " | " + " | ".join(cells(n)) + f" | {ratio(accepted(p), accepted(n))} |")

o, e = get("pushwire", "edge-path-origin"), get("pushwire", "edge-path-edge")
if o and e:
    print("\n### (e) Edge path: trigger → delivery, 1,000 subscribers over 10 channels, 50 triggers/s\n")
    print("| trigger path | p50 ms | p90 ms | p99 ms | trigger round trip p50 ms | lost |")
    print("|---|---|---|---|---|---|")
    for label, r in (("origin trigger API", o), ("edge worker (workerd) → bridge → Redis", e)):
        print(f"| {label} | {r['latency']['p50_ms']:.2f} | {r['latency']['p90_ms']:.2f} | {r['latency']['p99_ms']:.2f} | "
              f"{r['trigger_latency']['p50_ms']:.2f} | {r['lost']} |")
    print(f"\nAdded by the edge path at p50: {e['latency']['p50_ms'] - o['latency']['p50_ms']:.2f} ms.")

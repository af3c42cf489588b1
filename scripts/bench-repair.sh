#!/usr/bin/env bash
# Benchmark of `jetsam-node --repair` (docs/node.md, "Repair"): a 3-node R3
# strong+always cluster under unthrottled load (4 clients); after LOAD_SECS
# one node is killed, 8 bits are flipped in its log segment, and it is
# restarted with --repair 1 s later while the other two keep acking. Run
# once per node (n1, n2, n3), so both cases show: the flipped node was the
# leader (a new leader is elected while it is down; its repair costs no
# further election) or a follower (its higher term deposes the leader once).
# Prints, per run: the verdict, how long the node took from its restart to
# "caught up" and how many entries it copied, the longest pause in
# acknowledgements after its restart, and the leaderships from the node
# logs. Asserts nothing.
#
# Usage: scripts/bench-repair.sh [LOAD_SECS] (default 20; needs jq)
# Env: BENCH_KEEP=1 keeps the run folders (their paths are printed).
set -euo pipefail
cd "$(dirname "$0")/.."
load="${1:-20}"
dir="$(mktemp -d)"
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  echo "run folders under: $dir"
else
  trap 'rm -rf "$dir"' EXIT
fi
cargo build --release -p jetsam-harness -p jetsam-node --bins

strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

bench() {
  local node="$1" run="$dir/run-$1"
  cat >"$dir/bench-repair-$node.toml" <<EOF
name = "bench-repair-$node"
nodes = 3
duration = "$((load + 8))s"
[target]
repair = true
[stream]
replicas = 3
consistency = "strong"
sync = "always"
[workload]
clients = 4
[[faults]]
kind = "bitflip"
targets = ["$node"]
at = ["${load}s"]
heal_after = "1s"
bits = 8
EOF
  target/release/jetsam run "$dir/bench-repair-$node.toml" --seed 1 --out "$run" >"$dir/out-$node.txt" 2>&1 || true
  echo "== bit flips in $node's log after ${load} s of load"
  if [ ! -f "$run/report.json" ]; then
    cat "$dir/out-$node.txt"
    echo "  the run wrote no report.json (see above)"
    return
  fi
  local log found caught restart_ns pause_ms ms entries
  log="$(strip "$run/nodes/$node.log")"
  found="$(grep -m1 'recovery found damage' <<<"$log" | cut -c1-26 || true)"
  caught="$(grep -m1 'caught up after --repair' <<<"$log" || true)"
  restart_ns="$(jq -r --arg n "$node" 'select(.kind == "restart" and .nodes == [$n]) | .t_ns' "$run/events.jsonl" | head -1)"
  pause_ms="$(jq -r 'select(.type == "ok") | .t_ns' "$run/history.jsonl" | sort -n |
    awk -v r="$restart_ns" '{ if (p && $1 > r && $1 - p > g) g = $1 - p; p = $1 } END { printf "%.0f", g / 1e6 }')"
  echo "  verdict: $(jq -r '.verdict' "$run/report.json") (acked $(jq -r '.acked' "$run/report.json"), lost $(jq -r '.lost' "$run/report.json"))"
  if [ -n "$found" ] && [ -n "$caught" ]; then
    ms=$((($(date -d "${caught:0:26}" +%s%N) - $(date -d "$found" +%s%N)) / 1000000))
    entries="$(sed -n 's/.*last_index=\([0-9]*\).*/\1/p' <<<"$caught")"
    echo "  restart -> caught up: ${ms} ms (${entries} log entries copied)"
  else
    echo "  $node did not repair and catch up (the flips may have hit only the tail); its log:"
    grep -E 'WARN|ERROR|caught up' <<<"$log" | cut -c1-200 | sed 's/^/    /'
  fi
  echo "  longest ack pause after the restart: ${pause_ms} ms"
  echo "  leaderships:"
  for n in n1 n2 n3; do
    strip "$run/nodes/$n.log" | grep -E 'became leader|stepping down|no longer leader' | cut -c1-200 || true
  done | sort | sed 's/^/    /'
}

for node in n1 n2 n3; do
  bench "$node"
done

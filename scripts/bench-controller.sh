#!/usr/bin/env bash
# Benchmark of the controller (harness/examples/bench_controller.rs):
# start-to-ready time of a 5-node reference-node cluster (goal < 3 s), and
# acked publishes per second through the controller's workload (history
# writer, records, latencies) versus a bare client loop on the same 3-node
# R3 strong+always cluster, alternating rounds (goal: ratio >= 0.9). Then
# one real `jetsam run` of a no-fault scenario for reference. Prints
# figures; asserts nothing.
#
# Usage: scripts/bench-controller.sh [--secs N] [--rounds N] [--clients N] [--in-flight N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p jetsam-node -p jetsam-harness --bins --examples
JETSAM_NODE_BIN="$PWD/target/release/jetsam-node" target/release/examples/bench_controller "$@"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/bench.toml" <<'TOML'
name = "bench-no-faults"
nodes = 3
duration = "10s"
[stream]
replicas = 3
consistency = "strong"
sync = "always"
[workload]
clients = 4
in_flight = 8
payload_bytes = 128
TOML
CI=1 target/release/jetsam run "$tmp/bench.toml" --seed 1 --out "$tmp/run" > "$tmp/out.txt" || true
grep -E "cluster ready|load: done" "$tmp/out.txt" || true
python3 - "$tmp/run/report.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(f"jetsam run (10 s, no faults): {r['acked']} acked = {r['acked'] / 10:.0f} acked/s, verdict {r['verdict']}, latency {r['latency']}")
PY

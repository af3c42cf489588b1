#!/usr/bin/env bash
# Benchmark of the reference node (docs/node.md): acknowledged publishes per
# second and p50/p99 ack latency for R1/R3 in strong+always, strong+2m and
# async R1 (8 clients, 128-byte payloads, ~5 s each), next to the disk's raw
# fsync rate measured in the same run, and the ceiling: a no-op server of
# the same protocol driven by the same clients. Prints figures; asserts nothing.
#
# Usage: scripts/bench-node.sh [--secs N] [--dir DIR] [--only "R1 strong always"]
# DIR must be on the disk you care about (default: the system temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p jetsam-node --bins --examples
JETSAM_NODE_BIN="$PWD/target/release/jetsam-node" exec target/release/examples/bench "$@"

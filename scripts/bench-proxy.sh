#!/usr/bin/env bash
# What a link proxy (jetsam_faults::net) costs on loopback: bulk MB/s,
# sequential round trips per second and small-echo latency p50/p99, directly
# and through one proxy. Prints figures; asserts nothing.
# Usage: scripts/bench-proxy.sh [--mb N] [--round-trips N] [--message-bytes N]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p jetsam-faults --example bench_proxy -- "$@"

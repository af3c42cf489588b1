#!/usr/bin/env bash
# What a link proxy (jetsam_faults::net) costs. Prints figures; asserts nothing.
#
#   scripts/bench-proxy.sh [--mb N] [--round-trips N] [--message-bytes N] [--repeat N]
#       loopback: bulk MB/s, sequential round trips per second and small-echo
#       latency p50/p99, directly and through one proxy.
#   scripts/bench-proxy.sh --cluster [--seconds N] [--clients N] [--inflight N] [--sync always|INTERVAL] [--repeat N]
#       the issue's figure: acked publishes per second and p50/p99 latency of a
#       3-node R3 jetsam-node cluster with peer links through proxies vs direct
#       (goal: ratio >= 0.8, p99 added < 1 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--cluster" ]]; then
    shift
    cargo build --quiet --release -p jetsam-node
    exec cargo run --quiet --release -p jetsam-faults --example bench_cluster -- "$@"
fi
exec cargo run --quiet --release -p jetsam-faults --example bench_proxy -- "$@"

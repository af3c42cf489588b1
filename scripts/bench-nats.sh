#!/usr/bin/env bash
# Publish rate of the harness's real publish path (jetsam_workloads::run with
# the NATS publishers and a history writer) against a bare async-nats
# pipelined loop, on the same 3-node R3 nats-server cluster on loopback,
# alternating over ROUNDS rounds. Prints figures; nothing is asserted.
#
# Usage: scripts/bench-nats.sh [VERSION] [SECONDS] [CLIENTS] [IN_FLIGHT] [SYNC] [ROUNDS]
#        (defaults: 2.12.1 3 4 256 always 2; SYNC "default" = the server's 2m
#        interval, or a duration such as 1s; installs the server if missing)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-2.12.1}"
"$root/scripts/install-nats.sh" "$version" >/dev/null
cd "$root"
cargo build --quiet --release -p jetsam-targets --example nats_bench
exec "$root/target/release/examples/nats_bench" "$version" "${2:-3}" "${3:-4}" "${4:-256}" "${5:-always}" "${6:-2}"

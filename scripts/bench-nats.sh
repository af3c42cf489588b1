#!/usr/bin/env bash
# Publish rate through jetsam's NATS Publisher (targets/src/nats.rs) against
# a bare async-nats pipelined loop, on the same 3-node R3 nats-server
# cluster (sync always) on loopback. Prints figures; nothing is asserted.
#
# Usage: scripts/bench-nats.sh [VERSION] [SECONDS] [CLIENTS] [IN_FLIGHT] [SYNC]
#        (defaults: 2.12.1 3 4 256 always; SYNC "default" = the server's 2m
#        interval, or a duration such as 1s; installs the server if missing)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-2.12.1}"
"$root/scripts/install-nats.sh" "$version" >/dev/null
cd "$root"
cargo build --quiet --release -p jetsam-targets --example nats_bench
exec "$root/target/release/examples/nats_bench" "$version" "${2:-3}" "${3:-4}" "${4:-256}" "${5:-always}"

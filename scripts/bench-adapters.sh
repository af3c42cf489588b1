#!/usr/bin/env bash
# Adapter overhead (issue 13): acked writes/s of each shipped adapter target
# through `jetsam run` versus a bare Python client loop on a server of the
# same configuration (scripts/bench-adapters.py). Prints figures; asserts
# nothing. Needs scripts/install-targets.sh first.
#
# Usage: scripts/bench-adapters.sh [--secs N] [--clients N] [--rounds N] [--only NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec .targets/venv/bin/python3 scripts/bench-adapters.py "$@"

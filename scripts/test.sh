#!/usr/bin/env bash
# The whole test suite, as README.md states it. Builds every binary first
# (integration tests spawn jetsam-node, jetsam-tracer and jetsam by path),
# then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace

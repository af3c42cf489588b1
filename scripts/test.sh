#!/usr/bin/env bash
# The whole test suite, as README.md states it, with all its set-up: installs
# the pinned nats-server binaries the NATS tests run and the systems the
# adapter targets drive (PostgreSQL, Redis, the adapters' venv) and headless
# Chromium for the browser test of the HTML pages (all idempotent), builds
# every binary (integration tests spawn jetsam-node, jetsam-tracer and jetsam
# by path), then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats.sh 2.12.1 2.15.1
scripts/install-targets.sh
scripts/install-browser.sh
cargo build --workspace --bins
cargo test --workspace
# Two tests of the streaming checker that cannot share a process: one counts
# the process's threads; the other fills a 256 KiB tmpfs, mounted in a
# private mount namespace (needs root, as the power-loss tests do).
cargo test -p jetsam-checkers --test stream_edges -- --ignored --exact no_thread_outlives_a_check --test-threads=1
small_tmp="$(mktemp -d)"
edges_bin="$(cargo test -p jetsam-checkers --test stream_edges --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*stream_edges[^"]*\)".*/\1/p' | tail -n 1)"
unshare -m sh -c "mount -t tmpfs -o size=256k tmpfs '$small_tmp' && JETSAM_SMALL_TMP='$small_tmp' \
  '$edges_bin' --ignored --exact a_full_temporary_folder_is_a_spill_error"
rmdir "$small_tmp"

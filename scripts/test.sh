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

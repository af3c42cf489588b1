#!/usr/bin/env bash
# Installs headless Chromium (Debian package `chromium`) for the browser test
# of report.html and comparison.html (harness/tests/browser.rs), which
# renders the pages and asserts from the rendered DOM.
#
# Usage: scripts/install-browser.sh
# Idempotent: nothing is done when `chromium` is already on PATH. Prints the
# path and version it found.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "failed to install chromium: run $0 as root (apt-get needs it)" >&2
    exit 4
  fi
  # A fresh machine has no package lists yet.
  if ! apt-cache show chromium >/dev/null 2>&1; then
    apt-get update -qq || { echo "failed to run apt-get update: check access to the Debian mirror" >&2; exit 4; }
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null || {
    echo "failed to apt-get install chromium: check access to the Debian mirror and rerun $0" >&2
    exit 4
  }
fi
command -v chromium >/dev/null 2>&1 || { echo "failed to find chromium on PATH after the install" >&2; exit 4; }
echo "chromium: $(command -v chromium) ($(chromium --version 2>/dev/null | head -n 1))"

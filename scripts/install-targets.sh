#!/usr/bin/env bash
# Installs the systems that jetsam's adapter targets drive (targets/*/):
# PostgreSQL 15 and Redis 7 from Debian, an unprivileged user `jetsam`
# (PostgreSQL refuses to run as root, so its node command drops to this
# user), and a Python venv <repo>/.targets/venv with the client libraries
# the Python adapters import (psycopg from PyPI) and the SurrealDB Python SDK
# (surrealdb from PyPI: its wheel carries SurrealDB's embedded engine, which
# targets/surrealdb/node.py serves; no registry ships the `surreal` server).
#
# Usage: scripts/install-targets.sh
# Idempotent: what is present is kept. No service is started: during the
# package install a policy-rc.d refuses every service start (Debian's
# postgresql package would otherwise start a cluster of its own), and jetsam
# starts its own servers on free loopback ports.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

have_pg() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }

if ! have_pg || ! have_redis; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "failed to install postgresql and redis-server: run $0 as root (apt-get needs it)" >&2
    exit 4
  fi
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  trap '[ "$made_policy" -eq 1 ] && rm -f "$policy"' EXIT
  # A fresh machine has no package lists yet.
  if ! apt-cache show postgresql >/dev/null 2>&1 || ! apt-cache show redis-server >/dev/null 2>&1; then
    apt-get update -qq || { echo "failed to run apt-get update: check access to the Debian mirror" >&2; exit 4; }
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null || {
    echo "failed to apt-get install postgresql redis-server: check access to the Debian mirror and rerun $0" >&2
    exit 4
  }
fi
have_pg || { echo "failed to find /usr/lib/postgresql/*/bin/postgres after the install" >&2; exit 4; }
have_redis || { echo "failed to find redis-server after the install" >&2; exit 4; }

if ! id -u jetsam >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin jetsam || {
    echo "failed to create the user jetsam (needed to run PostgreSQL as non-root): run $0 as root" >&2
    exit 4
  }
fi

venv="$root/.targets/venv"
if ! "$venv/bin/python3" -c 'import psycopg' >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "failed to create a venv in $venv: install python3-venv" >&2; exit 4; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]==3.2.13" || {
    echo "failed to pip install psycopg[binary]: check access to PyPI and rerun $0" >&2
    exit 4
  }
fi
# Pinned: targets/surrealdb's findings are for surrealdb 2.0.0 (surrealdb-core
# 2.3.10, SurrealKV 0.9.3).
if ! "$venv/bin/python3" -c 'import importlib.metadata as m, sys; sys.exit(m.version("surrealdb") != "2.0.0")' >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "surrealdb==2.0.0" || {
    echo "failed to pip install surrealdb==2.0.0 into $venv: check access to PyPI (a manylinux x86_64 wheel is needed) and rerun $0" >&2
    exit 4
  }
fi
"$venv/bin/python3" -c 'from surrealdb import Surreal' >/dev/null 2>&1 || {
  echo "failed to import surrealdb from $venv after the install: remove $venv and rerun $0" >&2
  exit 4
}
echo "postgres: $(ls -d /usr/lib/postgresql/*/bin | head -n 1)"
echo "redis-server: $(redis-server --version | head -n 1)"
echo "surrealdb (embedded engine, Python SDK): $("$venv/bin/python3" -c 'import importlib.metadata as m; print(m.version("surrealdb"))')"
echo "python for the adapters: $venv/bin/python3"

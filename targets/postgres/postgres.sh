#!/usr/bin/env bash
# Runs the postgres server as the user jetsam, replacing this shell (so the
# node's process is the postmaster itself). Usage: postgres.sh ARGS...
set -euo pipefail
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$bin/postgres" ] || { echo "failed to find postgres under /usr/lib/postgresql: run scripts/install-targets.sh" >&2; exit 4; }
exec setpriv --reuid=jetsam --regid=jetsam --clear-groups -- "$bin/postgres" "$@"

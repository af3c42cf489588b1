#!/usr/bin/env bash
# Runs the postgres server as the user jetsam, replacing this shell (so the
# node's process is the postmaster itself). Usage: postgres.sh ARGS...
set -euo pipefail
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$bin/postgres" ] || { echo "failed to find postgres under /usr/lib/postgresql: run scripts/install-targets.sh" >&2; exit 4; }
# After a simulated power loss the old postmaster can linger for a moment
# as a zombie (killed, not yet reaped by PID 1), and PostgreSQL refuses to
# start while the PID in postmaster.pid exists. A real power loss leaves no
# process behind, so a lock file whose PID is gone or a zombie is stale: remove
# it. A live PID is left alone (PostgreSQL then refuses, as it should).
data=""
prev=""
for a in "$@"; do [ "$prev" = "-D" ] && data="$a"; prev="$a"; done
pidfile="$data/postmaster.pid"
if [ -n "$data" ] && [ -f "$pidfile" ]; then
  pid="$(head -n 1 "$pidfile" | tr -dc 0-9)"
  state=""
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && state="$(sed 's/^.*) //' "/proc/$pid/stat" | cut -c1)"
  if [ -z "$state" ] || [ "$state" = "Z" ]; then
    echo "jetsam postgres.sh: removing stale $pidfile (pid ${pid:-?} ${state:-gone})" >&2
    rm -f "$pidfile"
  fi
fi
exec setpriv --reuid=jetsam --regid=jetsam --clear-groups -- "$bin/postgres" "$@"

#!/usr/bin/env bash
# Makes an empty PostgreSQL cluster in the node's data dir, owned by the
# user jetsam (PostgreSQL refuses to run as root). Run by jetsam once per
# node before its first start. Usage: init-node.sh DATA_DIR
set -euo pipefail
data="$1"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$bin/initdb" ] || { echo "failed to find initdb under /usr/lib/postgresql: run scripts/install-targets.sh" >&2; exit 4; }
id -u jetsam >/dev/null 2>&1 || { echo "failed to find the user jetsam: run scripts/install-targets.sh" >&2; exit 4; }
chown jetsam:jetsam "$data"
chmod 700 "$data"
exec setpriv --reuid=jetsam --regid=jetsam --clear-groups -- \
  "$bin/initdb" --pgdata="$data" --username=jetsam --auth=trust --encoding=UTF8 --locale=C >/dev/null

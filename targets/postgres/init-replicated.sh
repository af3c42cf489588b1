#!/usr/bin/env bash
# Makes one node of a replicated PostgreSQL cluster, owned by the user
# jetsam. Run by jetsam once per node, before any node starts, in node
# order. Usage: init-replicated.sh DATA_DIR NAME DATA_ROOT PEERS
#   n1 (the primary): initdb, as init-node.sh does;
#   any other node: a copy of n1's data dir (made by initdb just before and
#   cleanly shut down, so it is consistent), plus standby.signal and a
#   primary_conninfo naming n1's address as this node reaches it (from
#   PEERS, "n1=127.0.0.1:PORT,n3=..."; a link proxy when the scenario has
#   partitions).
set -euo pipefail
data="$1" name="$2" root="$3" peers="$4"
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$name" = "n1" ]; then
  exec "$here/init-node.sh" "$data"
fi
primary="$root/n1"
[ -f "$primary/PG_VERSION" ] || { echo "failed to find the primary's data dir $primary: n1 must be initialized first" >&2; exit 4; }
addr=""
IFS=',' read -ra list <<< "$peers"
for p in "${list[@]}"; do
  [ "${p%%=*}" = "n1" ] && addr="${p#*=}"
done
[ -n "$addr" ] || { echo "failed to find n1 in the peers list \"$peers\"" >&2; exit 4; }
host="${addr%:*}" port="${addr##*:}"
chown jetsam:jetsam "$data"
chmod 700 "$data"
cp -a "$primary/." "$data/"
touch "$data/standby.signal"
printf "primary_conninfo = 'host=%s port=%s user=jetsam application_name=%s'\n" "$host" "$port" "$name" > "$data/postgresql.auto.conf"
chown jetsam:jetsam "$data/standby.signal" "$data/postgresql.auto.conf"

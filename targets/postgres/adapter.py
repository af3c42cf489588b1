#!/usr/bin/env python3
"""jetsam adapter for PostgreSQL (docs/adapter-protocol.md, protocols 1 and 2).

Reads one JSON request per line on stdin, answers one JSON line on stdout.
The stream is the table `jetsam`; a publish is one autocommit
`INSERT ... RETURNING seq` on the first node (the primary), so its answer
comes after COMMIT (whatever synchronous_commit and
synchronous_standby_names make COMMIT wait for). Requests are answered in
order, one at a time; jetsam's own timeout turns a stuck publish into info.

With more than one node (targets/postgres/replicated.toml) the others are
hot standbys of the first: `ready` also waits until the primary sees every
standby streaming, `converged` until every standby has replayed all the WAL
the primary has flushed, and `read` reads each server's own table.
With protocol 2 (replicated.toml) it also answers `failover`: jetsam kept
the primary down, so promote the standby that has received the most WAL
(it holds every commit a synchronous standby acknowledged) and re-point the
other standbys to it; `converged` then waits for them on the new primary
and leaves the down nodes out.
"""
import json
import sys
import time

import psycopg
import psycopg.sql

CONNECT_TIMEOUT_S = 2
# A server that refuses connections (down, or still recovering) is answered
# "fail" after this pause, so a client does not spin while it is down.
DOWN_BACKOFF_S = 0.05
CREATE = "CREATE TABLE IF NOT EXISTS jetsam (seq bigserial PRIMARY KEY, msg text NOT NULL, payload text NOT NULL)"


# pg_promote's own wait for the promotion to finish (jetsam's bound is 60 s).
PROMOTE_WAIT_S = 30


class Nodes:
    def __init__(self, nodes):
        self.names = [n["name"] for n in nodes]
        self.addr = {n["name"]: (n["host"], n["port"]) for n in nodes}
        self.conns = {}
        # The first node is the primary until a failover promotes another.
        self.primary = self.names[0]
        # Nodes jetsam keeps down (told by failover): never asked again.
        self.down = set()

    def up(self):
        return [n for n in self.names if n not in self.down]

    def standbys(self):
        return [n for n in self.up() if n != self.primary]

    def conn(self, name):
        c = self.conns.get(name)
        if c is None or c.closed or c.broken:
            host, port = self.addr[name]
            c = psycopg.connect(host=host, port=port, user="jetsam", dbname="postgres",
                                connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
            self.conns[name] = c
        return c

    def drop(self, name):
        c = self.conns.pop(name, None)
        if c is not None:
            try:
                c.close()
            except psycopg.Error:
                pass


def publish(nodes, msg, payload):
    primary = nodes.primary
    try:
        conn = nodes.conn(primary)
    except psycopg.Error as e:
        time.sleep(DOWN_BACKOFF_S)
        return {"outcome": "fail", "error": "connect: %s" % str(e).strip()}  # nothing was sent
    try:
        row = conn.execute("INSERT INTO jetsam (msg, payload) VALUES (%s, %s) RETURNING seq", (msg, payload)).fetchone()
    except psycopg.OperationalError as e:
        # The connection broke after the INSERT was sent: it may have committed.
        nodes.drop(primary)
        return {"outcome": "info", "error": str(e).strip()}
    except psycopg.Error as e:
        # The server refused the statement (e.g. read-only, shutting down): no commit.
        return {"outcome": "fail", "error": str(e).strip()}
    return {"outcome": "ok", "seq": row[0], "node": primary}


def each_node(nodes, sql):
    """Runs sql on every node that is not kept down; None when all answer, else why not."""
    for name in nodes.up():
        try:
            nodes.conn(name).execute(sql)
        except psycopg.Error as e:
            nodes.drop(name)
            return "%s: %s" % (name, str(e).strip())
    return None


def query(nodes, name, sql):
    """Rows of sql on one node; raises psycopg.Error (the connection dropped)."""
    try:
        return nodes.conn(name).execute(sql).fetchall()
    except psycopg.Error:
        nodes.drop(name)
        raise


def standbys_streaming(nodes):
    """None when the primary sees every standby streaming, else why not."""
    try:
        rows = query(nodes, nodes.primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
    except psycopg.Error as e:
        return "%s: %s" % (nodes.primary, str(e).strip())
    missing = sorted(set(nodes.standbys()) - {r[0] for r in rows})
    return None if not missing else "the primary sees no streaming standby %s" % ", ".join(missing)


def standbys_caught_up(nodes):
    """None when every standby has replayed all the WAL the primary has
    written and flushed (nothing committed waits in the primary's buffers),
    else why not."""
    try:
        flush, insert = query(nodes, nodes.primary,
                              "SELECT pg_current_wal_flush_lsn(), pg_current_wal_insert_lsn()")[0]
    except psycopg.Error as e:
        return "%s: %s" % (nodes.primary, str(e).strip())
    if flush != insert:
        return "the primary %s has WAL up to %s, flushed up to %s" % (nodes.primary, insert, flush)
    for name in nodes.standbys():
        try:
            (behind, replayed), = query(nodes, name, "SELECT pg_wal_lsn_diff('%s', pg_last_wal_replay_lsn()) > 0, "
                                                     "pg_last_wal_replay_lsn()" % flush)
        except psycopg.Error as e:
            return "%s: %s" % (name, str(e).strip())
        if behind is None or behind:
            return "%s replayed WAL up to %s of the primary's %s" % (name, replayed, flush)
    return None


def lsn(text):
    """An LSN 'X/Y' as an integer (None stays None)."""
    if text is None:
        return None
    hi, lo = str(text).split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def failover(nodes, down):
    """Promotes the standby that has received the most WAL when the primary
    is down, and re-points every other running standby to it."""
    nodes.down |= set(down) & set(nodes.names)
    if nodes.primary not in nodes.down:
        return {"ok": True, "leader": nodes.primary, "note": "the primary %s is up: nothing to promote" % nodes.primary}
    old = nodes.primary
    received = {}
    for name in nodes.standbys():
        try:
            (recv, replay), = query(nodes, name, "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()")
        except psycopg.Error as e:
            print("failover: %s: %s" % (name, str(e).strip()), file=sys.stderr, flush=True)
            continue
        # receive: WAL streamed and flushed on the standby (what a
        # synchronous commit waited for); replay can only be behind it.
        received[name] = max(v for v in (lsn(recv), lsn(replay), 0) if v is not None)
    if not received:
        return {"error": "no standby answered: nothing to promote in place of %s" % old}
    # The most WAL wins; ties go to the first name, so a run replays alike.
    best = sorted(received, key=lambda n: (-received[n], nodes.names.index(n)))[0]
    try:
        (promoted,), = query(nodes, best, "SELECT pg_promote(true, %d)" % PROMOTE_WAIT_S)
    except psycopg.Error as e:
        return {"error": "pg_promote() on %s: %s" % (best, str(e).strip())}
    if not promoted:
        return {"error": "pg_promote() on %s did not finish within %d s" % (best, PROMOTE_WAIT_S)}
    nodes.primary = best
    host, port = nodes.addr[best]
    repointed = []
    for name in nodes.standbys():
        conninfo = "host=%s port=%s user=jetsam application_name=%s" % (host, port, name)
        try:
            # primary_conninfo is reloadable (PostgreSQL 13+): the walreceiver
            # reconnects to the new primary and follows its timeline
            # (recovery_target_timeline = latest, the default).
            nodes.conn(name).execute(psycopg.sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(conninfo))
            nodes.conn(name).execute("SELECT pg_reload_conf()")
        except psycopg.Error as e:
            nodes.drop(name)
            return {"error": "re-pointing %s to %s: %s" % (name, best, str(e).strip())}
        repointed.append(name)
    lsns = ", ".join("%s %X/%X" % (n, received[n] >> 32, received[n] & 0xFFFFFFFF) for n in sorted(received))
    note = "promoted %s (received WAL: %s)" % (best, lsns)
    if repointed:
        note += "; re-pointed %s to it" % ", ".join(repointed)
    print("failover: " + note, file=sys.stderr, flush=True)
    return {"ok": True, "leader": best, "note": note}


def handle(nodes, req):
    op = req["op"]
    if op == "publish":
        return publish(nodes, req["msg"], req["payload"])
    if op == "failover":
        return failover(nodes, req.get("down", []))
    if op in ("ready", "converged"):
        why = each_node(nodes, "SELECT 1")
        if why is None and len(nodes.up()) > 1:
            why = standbys_streaming(nodes) if op == "ready" else standbys_caught_up(nodes)
        return {op: True} if why is None else {op: False, "why": why}
    if op == "create":
        try:
            nodes.conn(nodes.primary).execute(CREATE)
        except psycopg.Error as e:
            nodes.drop(nodes.primary)
            return {"error": str(e).strip()}
        return {"ok": True}
    if op == "leader":
        return {"leader": nodes.primary}
    if op == "read":
        name = req["node"]
        try:
            rows = nodes.conn(name).execute("SELECT seq, msg FROM jetsam ORDER BY seq").fetchall()
        except psycopg.errors.UndefinedTable:
            # The table was created (jetsam got "ok" to create) and is gone:
            # with fsync = off a power loss can take the catalog entry with
            # it. The node holds no message of the stream.
            print("read %s: table jetsam does not exist: reporting it empty" % name, file=sys.stderr, flush=True)
            return {"msgs": []}
        except psycopg.Error as e:
            nodes.drop(name)
            return {"error": "%s: %s" % (name, str(e).strip())}
        return {"msgs": [[seq, msg] for seq, msg in rows]}
    return {"error": "unknown op %r" % op}


def main():
    nodes = None
    for raw in sys.stdin:
        req = json.loads(raw)
        if req["op"] == "hello":
            nodes = Nodes(req["nodes"])
            # Echo the target file's protocol; failover exists from version 2
            # and only where there is a standby to promote.
            protocol = req.get("protocol", 1)
            answer = {"protocol": protocol, "adapter": "jetsam-postgres 2", "cluster_view": False,
                      "failover": protocol >= 2 and len(nodes.names) > 1}
        else:
            answer = handle(nodes, req)
        answer["id"] = req["id"]
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

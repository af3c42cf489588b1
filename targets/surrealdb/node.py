#!/usr/bin/env python3
"""A jetsam node around SurrealDB's embedded engine (SurrealKV).

The PyPI package `surrealdb` (the Python SDK) carries SurrealDB's embedded
engine (surrealdb-core with the SurrealKV storage engine) but not the
`surreal` network server. This process is that missing server, written for
jetsam: it owns one embedded datastore and serves a tiny protocol on
127.0.0.1 only. It is not SurrealDB's server; the storage under it is.

Usage: node.py --data-dir DIR --port PORT
Runs in the foreground, logs to stderr. Durability is the engine's own knob,
read from the environment by the engine itself: SURREAL_SYNC_DATA=true makes
every commit fsync the commit log before it returns (SurrealKV
Durability::Immediate); unset or false, a commit returns after write()
without fsync (Durability::Eventual, SurrealDB's default).

Protocol: one JSON object per line each way, answered in order per
connection. A single thread serves every connection, one request at a time,
so sequence numbers are assigned in commit order.

  {"op": "ping"}                       -> {"ok": true, "seq": MAX}
  {"op": "publish", "msg", "payload"}  -> {"ok": true, "seq": S}   (after the engine returned)
                                          {"ok": false, "error": "..."}  (the engine failed: unknown)
  {"op": "read"}                       -> {"ok": true, "msgs": [[seq, msg], ...]}  (by seq)

Each message is the record m:<seq> (an integer record id) with fields msg
and payload, written by one CREATE statement (one transaction). At start-up
the next sequence is one past the largest stored record id.
"""
import argparse
import json
import os
import selectors
import socket
import sys
import time

TABLE = "m"
MAX_LINE = 1 << 20


def log(text):
    sys.stderr.write("node %s: %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


class Store:
    def __init__(self, data_dir):
        from surrealdb import Surreal  # the venv's surrealdb==2.0.0 (scripts/install-targets.sh)

        path = os.path.join(data_dir, "db")
        started = time.monotonic()
        self.db = Surreal("surrealkv://%s" % path)
        self.db.use("jetsam", "jetsam")
        rows = self.rows()
        seqs = [seq for seq, _ in rows]
        self.last = seqs[-1] if seqs else 0
        gaps = self.last - len(seqs)
        log("opened surrealkv://%s in %.0f ms (SURREAL_SYNC_DATA=%s): %d records, max seq %d%s"
            % (path, (time.monotonic() - started) * 1000, os.environ.get("SURREAL_SYNC_DATA", "unset"),
               len(seqs), self.last, ", %d sequence(s) missing below it" % gaps if gaps else ""))

    def rows(self):
        res = self.db.query("SELECT record::id(id) AS seq, msg FROM type::table($t) ORDER BY seq", {"t": TABLE})
        return [(int(r["seq"]), r["msg"]) for r in res or []]

    def publish(self, msg, payload):
        seq = self.last + 1
        try:
            self.db.query("CREATE type::thing($t, $s) SET msg = $m, payload = $p",
                          {"t": TABLE, "s": seq, "m": msg, "p": payload})
        except Exception as e:  # noqa: BLE001 - any engine error: the write's fate is unknown
            # Re-read the largest stored seq so the next publish does not reuse one.
            try:
                rows = self.rows()
                self.last = rows[-1][0] if rows else 0
            except Exception as e2:  # noqa: BLE001
                log("after a failed publish, reading the stored max seq failed too: %s" % e2)
            log("publish at seq %d failed: %s" % (seq, e))
            return {"ok": False, "error": "engine: %s" % e}
        self.last = seq
        return {"ok": True, "seq": seq}

    def handle(self, req):
        op = req.get("op")
        if op == "publish":
            return self.publish(str(req["msg"]), str(req.get("payload", "")))
        if op == "ping":
            return {"ok": True, "seq": self.last}
        if op == "read":
            try:
                return {"ok": True, "msgs": [[s, m] for s, m in self.rows()]}
            except Exception as e:  # noqa: BLE001
                return {"ok": False, "error": "read: %s" % e}
        return {"ok": False, "error": "unknown op %r" % op}


def serve(store, port):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        lsock.bind(("127.0.0.1", port))
    except OSError as e:
        log("failed to listen on 127.0.0.1:%d: %s; is another process on that port?" % (port, e))
        sys.exit(4)
    lsock.listen(64)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    bufs = {}
    log("listening on 127.0.0.1:%d" % port)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                conn, _ = lsock.accept()
                conn.setblocking(True)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(conn, selectors.EVENT_READ, True)
                bufs[conn] = b""
                continue
            conn = key.fileobj
            try:
                chunk = conn.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk or len(bufs[conn]) > MAX_LINE:
                sel.unregister(conn)
                conn.close()
                del bufs[conn]
                continue
            bufs[conn] += chunk
            out = []
            while b"\n" in bufs[conn]:
                line, bufs[conn] = bufs[conn].split(b"\n", 1)
                try:
                    answer = store.handle(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    answer = {"ok": False, "error": "bad request: %s" % e}
                out.append(json.dumps(answer).encode() + b"\n")
            try:
                conn.sendall(b"".join(out))
            except OSError:
                pass  # the client went away; recv will see it


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    try:
        store = Store(args.data_dir)
    except ImportError as e:
        log("failed to import surrealdb (%s): run scripts/install-targets.sh and start the node with "
            ".targets/venv/bin/python3" % e)
        sys.exit(4)
    except Exception as e:  # noqa: BLE001 - the engine refused to open its files
        log("failed to open the datastore under %s: %s" % (args.data_dir, e))
        sys.exit(3)
    serve(store, args.port)


if __name__ == "__main__":
    main()

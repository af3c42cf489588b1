#!/usr/bin/env python3
"""jetsam adapter for SurrealDB's embedded engine behind node.py
(docs/adapter-protocol.md, protocol 1).

Reads one JSON request per line on stdin, answers one JSON line on stdout.
Talks to node.py (this folder), which owns the SurrealKV datastore, over its
newline-delimited JSON protocol on a plain socket, so it needs only the
standard library. One server: every publish goes to the first node. Requests
are answered in order, one at a time; jetsam's own timeout turns a stuck
publish into info.
"""
import json
import socket
import sys
import time

CONNECT_TIMEOUT_S = 1.0
REPLY_TIMEOUT_S = 1.5  # below jetsam's shortest publish timeout in the shipped scenarios
READ_TIMEOUT_S = 50.0  # below jetsam's 60 s bound on a read
# A refused connection is answered "fail" after this pause, so a client does
# not spin thousands of failures while the node is down.
DOWN_BACKOFF_S = 0.05


class Conn:
    def __init__(self, host, port):
        self.addr = (host, port)
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def connect(self):
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=CONNECT_TIMEOUT_S)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, req, timeout=REPLY_TIMEOUT_S):
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(req).encode() + b"\n")

    def reply(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, req, timeout=REPLY_TIMEOUT_S):
        """The node's answer; raises OSError/ValueError and drops the connection."""
        try:
            self.connect()
            self.send(req, timeout)
            return self.reply()
        except (OSError, ValueError):
            self.close()
            raise


def publish(conn, node, msg, payload):
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        time.sleep(DOWN_BACKOFF_S)
        return {"outcome": "fail", "error": "connect: %s" % e}  # nothing was sent
    try:
        conn.send({"op": "publish", "msg": msg, "payload": payload})
        answer = conn.reply()
    except (OSError, ValueError) as e:
        conn.close()
        return {"outcome": "info", "error": "after send: %s" % (e or type(e).__name__)}
    if answer.get("ok"):
        return {"outcome": "ok", "seq": answer["seq"], "node": node}
    # The engine returned an error: the commit may or may not be on disk.
    return {"outcome": "info", "error": answer.get("error", "the node answered without ok")}


def handle(op, req, conns, nodes):
    first = nodes[0]
    if op == "publish":
        return publish(conns[first], first, req["msg"], req["payload"])
    if op in ("ready", "converged", "create"):
        # One server with nothing to replicate; the table needs no definition
        # (SurrealDB tables are schemaless and made by the first CREATE).
        for name in nodes:
            try:
                answer = conns[name].call({"op": "ping"})
                why = None if answer.get("ok") else answer.get("error", "not ok")
            except (OSError, ValueError) as e:
                why = str(e) or type(e).__name__
            if why is not None:
                why = "%s: %s" % (name, why)
                return {"error": why} if op == "create" else {op: False, "why": why}
        return {"ok": True} if op == "create" else {op: True}
    if op == "leader":
        return {"leader": first}
    if op == "read":
        name = req["node"]
        try:
            answer = conns[name].call({"op": "read"}, timeout=READ_TIMEOUT_S)
        except (OSError, ValueError) as e:
            return {"error": "%s: read failed: %s" % (name, str(e) or type(e).__name__)}
        if not answer.get("ok"):
            return {"error": "%s: %s" % (name, answer.get("error", "read not ok"))}
        return {"msgs": answer["msgs"]}
    return {"error": "unknown op %r" % op}


def main():
    conns = {}
    nodes = []
    for raw in sys.stdin:
        req = json.loads(raw)
        op, rid = req["op"], req["id"]
        if op == "hello":
            nodes = [n["name"] for n in req["nodes"]]
            conns = {n["name"]: Conn(n["host"], n["port"]) for n in req["nodes"]}
            answer = {"protocol": 1, "adapter": "jetsam-surrealdb-embedded 1", "cluster_view": False}
        else:
            answer = handle(op, req, conns, nodes)
        answer["id"] = rid
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

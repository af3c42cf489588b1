#!/usr/bin/env python3
"""README's walk-through adapter: jetsam's requests on stdin, one JSON
answer per line on stdout (docs/adapter-protocol.md). The stream is the
Redis list `jetsam`; RPUSH answers the list's new length: the sequence."""
import json, socket, sys, time

class Redis:
    def __init__(self, host, port):
        self.addr, self.sock, self.buf = (host, port), None, b""

    def connect(self):
        if self.sock is None:
            self.sock, self.buf = socket.create_connection(self.addr, timeout=1.5), b""

    def call(self, *args):
        self.connect()
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(x).encode() for x in args))
        self.sock.sendall(out)
        return self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self.line()
        if line[:1] == b"-":
            raise ValueError(line[1:].decode())
        if line[:1] == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        if line[:1] == b"$":
            return self.line().decode()  # payloads are ASCII letters: no CRLF inside
        return int(line[1:]) if line[:1] == b":" else line[1:].decode()

def answer(req, nodes):
    op, name = req["op"], "n1"
    try:
        if op == "publish":
            try:
                nodes[name].connect()
            except OSError as e:
                time.sleep(0.05)  # the server is down: do not spin
                return {"outcome": "fail", "error": "connect: %s" % e}  # nothing was sent
            seq = nodes[name].call("RPUSH", "jetsam", req["msg"] + " " + req["payload"])
            return {"outcome": "ok", "seq": seq, "node": name}
        if op in ("ready", "converged"):
            nodes[name].call("PING")
            return {op: True}
        if op == "create":
            return {"ok": True}
        if op == "leader":
            return {"leader": name}
        if op == "read":
            items = nodes[req["node"]].call("LRANGE", "jetsam", 0, -1)
            return {"msgs": [[i + 1, item.split(" ")[0]] for i, item in enumerate(items)]}
    except (OSError, ValueError) as e:
        for n in nodes.values():
            n.sock, n.buf = None, b""
        if op == "publish":
            return {"outcome": "info", "error": str(e)}  # sent, answer lost: unknown
        return {op: False, "why": str(e)} if op in ("ready", "converged") else {"error": str(e)}
    return {"error": "unknown op " + op}

nodes = {}
for raw in sys.stdin:
    req = json.loads(raw)
    if req["op"] == "hello":
        nodes = {n["name"]: Redis(n["host"], n["port"]) for n in req["nodes"]}
        out = {"protocol": 1, "adapter": "my-redis 1", "cluster_view": False}
    else:
        out = answer(req, nodes)
    out["id"] = req["id"]
    print(json.dumps(out), flush=True)

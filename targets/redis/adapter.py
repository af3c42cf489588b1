#!/usr/bin/env python3
"""jetsam adapter for Redis (docs/adapter-protocol.md, protocol 1).

Reads one JSON request per line on stdin, answers one JSON line on stdout.
The stream is the list `jetsam`: a publish is `RPUSH jetsam "<msg> <payload>"`
and the list's new length is the message's sequence. Talks RESP over a plain
socket, so it needs only the standard library. Requests are answered in
order, one at a time; jetsam's own timeout turns a stuck publish into info.
"""
import json
import socket
import sys
import time

KEY = b"jetsam"
CONNECT_TIMEOUT_S = 1.0
REPLY_TIMEOUT_S = 1.5  # below jetsam's shortest publish timeout in the shipped scenarios
# A refused connection or a LOADING server is answered "fail" after this
# pause, so a client does not spin thousands of failures while a node is down.
DOWN_BACKOFF_S = 0.05


class RedisError(Exception):
    """The server answered with an error reply: the command was not run."""


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
            self.sock.settimeout(REPLY_TIMEOUT_S)

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind in (b"+",):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise ConnectionError("unexpected RESP line %r" % line[:40])

    def call(self, *args):
        self.connect()
        self.send(*args)
        return self.reply()


def main():
    conns = {}
    nodes = []
    for raw in sys.stdin:
        req = json.loads(raw)
        op, rid = req["op"], req["id"]
        if op == "hello":
            nodes = [n["name"] for n in req["nodes"]]
            conns = {n["name"]: Conn(n["host"], n["port"]) for n in req["nodes"]}
            answer = {"protocol": 1, "adapter": "jetsam-redis 1", "cluster_view": False}
        else:
            answer = handle(op, req, conns, nodes)
        answer["id"] = rid
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def handle(op, req, conns, nodes):
    first = nodes[0]
    if op == "publish":
        return publish(conns[first], first, req["msg"], req["payload"])
    if op in ("ready", "converged", "create"):
        for name in nodes:
            try:
                conns[name].call("PING")
            except (OSError, RedisError) as e:
                conns[name].close()
                why = "%s: %s" % (name, e)
                return {"error": why} if op == "create" else {op: False, "why": why}
        return {"ok": True} if op == "create" else {op: True}
    if op == "leader":
        return {"leader": first}
    if op == "read":
        name = req["node"]
        try:
            items = conns[name].call("LRANGE", KEY, 0, -1)
        except (OSError, RedisError) as e:
            conns[name].close()
            return {"error": "%s: LRANGE failed: %s" % (name, e)}
        return {"msgs": [[i + 1, item.split(b" ", 1)[0].decode()] for i, item in enumerate(items)]}
    return {"error": "unknown op %r" % op}


def publish(conn, node, msg, payload):
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        time.sleep(DOWN_BACKOFF_S)
        return {"outcome": "fail", "error": "connect: %s" % e}  # nothing was sent
    try:
        conn.send("RPUSH", KEY, "%s %s" % (msg, payload))
        seq = conn.reply()
    except RedisError as e:
        time.sleep(DOWN_BACKOFF_S)
        return {"outcome": "fail", "error": str(e)}  # refused (e.g. LOADING): not run
    except (OSError, ValueError) as e:
        conn.close()
        return {"outcome": "info", "error": "after send: %s" % e}
    return {"outcome": "ok", "seq": seq, "node": node}


if __name__ == "__main__":
    main()

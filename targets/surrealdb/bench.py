#!/usr/bin/env python3
"""Acked writes/s of SurrealDB's embedded engine three ways, for each
SURREAL_SYNC_DATA value: the engine called in-process (one CREATE per
write, as node.py does), a bare client loop against node.py (N worker
processes, one connection each), and `jetsam run` through adapter.py
(no faults, N clients). Prints one line per case; asserts nothing.

The jetsam figure is acked writes over the load phase as its history.jsonl
shows it (first invoke to last ack). Rounds alternate the two settings, as
this machine's load changes from minute to minute.

Usage (from the repository root, after scripts/install-targets.sh and a
release build):
    .targets/venv/bin/python3 targets/surrealdb/bench.py [--secs 5] [--clients 4] [--rounds 1] [--jetsam target/release/jetsam]
"""
import argparse
import json
import multiprocessing
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PAYLOAD = "x" * 64
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(path, secs, out):
    from surrealdb import Surreal
    db = Surreal("surrealkv://%s" % path)
    db.use("jetsam", "jetsam")
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        n += 1
        db.query("CREATE type::thing($t, $s) SET msg = $m, payload = $p",
                 {"t": "m", "s": n, "m": "b-%d" % n, "p": PAYLOAD})
    out.put(n)


def node_worker(port, secs, worker, out):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = sock.makefile("rwb")
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        f.write(b'{"op":"publish","msg":"b%d-%d","payload":"%s"}\n' % (worker, n, PAYLOAD.encode()))
        f.flush()
        if not json.loads(f.readline()).get("ok"):
            raise SystemExit("node.py refused a publish")
        n += 1
    out.put(n)


def wait_port(port, proc):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("node.py exited with %s before listening" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("node.py did not listen on 127.0.0.1:%d within %d s" % (port, READY_TIMEOUT_S))


def bare(tmp, sync, secs, clients):
    port = free_port()
    data = pathlib.Path(tempfile.mkdtemp(prefix="node-%s-" % sync, dir=tmp))
    env = dict(os.environ, SURREAL_SYNC_DATA=sync)
    proc = subprocess.Popen([sys.executable, str(HERE / "node.py"), "--data-dir", str(data), "--port", str(port)],
                            env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        out = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=node_worker, args=(port, secs, w, out)) for w in range(clients)]
        for w in workers:
            w.start()
        total = sum(out.get(timeout=secs + 30) for _ in workers)
        for w in workers:
            w.join(STOP_TIMEOUT_S)
        return total / secs
    finally:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def through_jetsam(tmp, jetsam, sync, secs, clients):
    scenario = pathlib.Path(tempfile.mkstemp(prefix="bench-%s-" % sync, suffix=".toml", dir=tmp)[1])
    sync_line = 'sync = "always"' if sync == "true" else ""
    scenario.write_text("""name = "surrealdb-bench-%s"
nodes = 1
duration = "%ds"
[target]
kind = "adapter"
file = "targets/surrealdb/target.toml"
[stream]
replicas = 1
consistency = "strong"
%s
[workload]
clients = %d
payload_bytes = 64
timeout = "2s"
""" % (sync, secs, sync_line, clients))
    out = scenario.with_suffix(".run")
    subprocess.run([jetsam, "run", str(scenario), "--out", str(out)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, timeout=secs + 120)
    # acked over the load phase as the history shows it (first invoke to last ack)
    first = last = None
    acked = 0
    with open(out / "history.jsonl") as f:
        for line in f:
            ev = json.loads(line)
            if first is None:
                first = ev["t_ns"]
            if ev["type"] == "ok":
                acked += 1
                last = ev["t_ns"]
    return acked / ((last - first) / 1e9) if acked else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--jetsam", default=str(ROOT / "target/release/jetsam"))
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="jetsam-sdb-bench-"))
    try:
        for rnd, sync in [(r, s) for r in range(args.rounds) for s in ("true", "false")]:
            os.environ["SURREAL_SYNC_DATA"] = sync
            out = multiprocessing.Queue()
            p = multiprocessing.Process(target=in_process, args=(str(tmp / ("inproc-%s-%d" % (sync, rnd))), args.secs, out))
            p.start()
            inproc = out.get(timeout=args.secs + 60) / args.secs
            p.join(STOP_TIMEOUT_S)
            node = bare(tmp, sync, args.secs, args.clients)
            adapter = through_jetsam(tmp, args.jetsam, sync, args.secs, args.clients)
            print("round %d SURREAL_SYNC_DATA=%-5s in-process %6.0f/s  bare loop on node.py (%d conns) %6.0f/s  "
                  "jetsam run via adapter.py (%d clients) %6.0f/s  adapter/bare %.2f"
                  % (rnd + 1, sync, inproc, args.clients, node, args.clients, adapter, adapter / node), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

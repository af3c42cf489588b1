#!/usr/bin/env python3
"""Adapter overhead: acked writes/s of each shipped adapter target through
`jetsam run` (no faults) versus a bare client loop in the adapter's own
language (Python) and with the adapter's own client code, against a server
of the same configuration. Prints one line per case; asserts nothing.

Usage: scripts/bench-adapters.sh [--secs N] [--clients N] [--rounds N] [--only NAME]
(run through the .sh wrapper: it builds jetsam and picks the venv python).
"""
import argparse
import importlib.util
import json
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
PAYLOAD = "x" * 64


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- bare loops: each worker process writes as fast as its server answers ---

def redis_worker(port, secs, worker, out):
    conn = load("targets/redis/adapter.py", "redis_adapter").Conn("127.0.0.1", port)
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        conn.call("RPUSH", b"jetsam", "b%d-%d %s" % (worker, n, PAYLOAD))
        n += 1
    out.put(n)


def postgres_worker(port, secs, worker, out):
    import psycopg
    conn = psycopg.connect(host="127.0.0.1", port=port, user="jetsam", dbname="postgres", autocommit=True)
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        conn.execute("INSERT INTO jetsam (msg, payload) VALUES (%s, %s) RETURNING seq", ("b%d-%d" % (worker, n), PAYLOAD)).fetchone()
        n += 1
    out.put(n)


def bare(worker, port, secs, clients):
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(port, secs, i, out)) for i in range(clients)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=secs + 30) for _ in procs)
    for p in procs:
        p.join(10)
    return total / secs


# --- servers for the bare loops, configured as the target files do ---

def wait_port(port, proc, log):
    end = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit("failed to start the server (exit %s); see %s" % (proc.returncode, log))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("failed to reach the server on port %d within %d s; see %s" % (port, READY_TIMEOUT_S, log))


def start(argv, port, tmp):
    log = tmp / "server.log"
    proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(port, proc, log)
    return proc


def stop(proc):
    """SIGINT (a fast shutdown for both servers), SIGKILL of the group after a grace period."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def redis_server(tmp, port, fsync):
    return start(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp),
                  "--appendonly", "yes", "--appendfsync", fsync, "--save", ""], port, tmp)


def postgres_server(tmp, port, commit):
    data = tmp / "data"
    data.mkdir()
    subprocess.run([ROOT / "targets/postgres/init-node.sh", data], check=True)
    proc = start([ROOT / "targets/postgres/postgres.sh", "-D", data, "-c", "listen_addresses=127.0.0.1",
                  "-c", "port=%d" % port, "-c", "unix_socket_directories=", "-c", "synchronous_commit=" + commit,
                  "-c", "wal_writer_delay=200ms", "-c", "shared_buffers=32MB"], port, tmp)
    import psycopg
    end = time.monotonic() + READY_TIMEOUT_S
    while True:  # the port opens before the server takes queries
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="jetsam", dbname="postgres", autocommit=True) as c:
                c.execute(load("targets/postgres/adapter.py", "pg_adapter").CREATE)
            return proc
        except psycopg.OperationalError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


# --- jetsam run of a no-fault scenario with the same clients ---

def jetsam(target_file, stream, clients, secs, tmp):
    scenario = tmp / "bench.toml"
    scenario.write_text(
        'name = "bench-adapter"\nnodes = 1\nduration = "%ds"\n[target]\nkind = "adapter"\nfile = "%s"\n'
        "[stream]\nreplicas = 1\n%s\n[workload]\nclients = %d\nin_flight = 1\npayload_bytes = 64\ntimeout = \"3s\"\n"
        % (secs, target_file, stream, clients))
    run = tmp / "run"
    subprocess.run([ROOT / "target/release/jetsam", "run", scenario, "--seed", "1", "--out", run],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "CI": "1"})
    report = json.loads((run / "report.json").read_text())
    return report["acked"] / secs


CASES = [
    ("redis aof always", "targets/redis/target.toml", 'consistency = "strong"\nsync = "always"',
     redis_worker, lambda tmp, port: redis_server(tmp, port, "always")),
    ("redis aof everysec", "targets/redis/target.toml", 'consistency = "async"\nsync = "1s"',
     redis_worker, lambda tmp, port: redis_server(tmp, port, "everysec")),
    ("postgres synchronous_commit on", "targets/postgres/target.toml", 'consistency = "strong"\nsync = "always"',
     postgres_worker, lambda tmp, port: postgres_server(tmp, port, "on")),
    ("postgres synchronous_commit off", "targets/postgres/target.toml", 'consistency = "async"\nsync = "200ms"',
     postgres_worker, lambda tmp, port: postgres_server(tmp, port, "off")),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1, help="alternating bare/jetsam rounds per case (noise)")
    ap.add_argument("--only")
    args = ap.parse_args()
    print("%-34s %12s %12s %6s" % ("case (%d clients, 1 in flight each)" % args.clients, "bare acked/s", "jetsam acked/s", "ratio"))
    for name, target, stream, worker, server in CASES:
        if args.only and args.only != name:
            continue
        for round_ in range(args.rounds):
            bare_rate, run_rate = measure(target, stream, worker, server, args)
            label = name if args.rounds == 1 else "%s (round %d)" % (name, round_ + 1)
            print("%-34s %12.0f %12.0f %6.2f" % (label, bare_rate, run_rate, run_rate / bare_rate), flush=True)


def measure(target, stream, worker, server, args):
    """One round: the bare loop on a fresh server, then a jetsam run."""
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        os.chmod(tmp, 0o755)  # postgres runs as jetsam and needs to reach its data dir
        port = free_port()
        proc = server(tmp, port)
        try:
            bare_rate = bare(worker, port, args.secs, args.clients)
        finally:
            stop(proc)
        return bare_rate, jetsam(target, stream, args.clients, args.secs, tmp)


if __name__ == "__main__":
    main()

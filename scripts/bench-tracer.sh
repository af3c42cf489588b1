#!/usr/bin/env bash
# Benchmark of the power-loss tracer (docs/power-loss.md). Prints figures;
# asserts nothing.
#  1. Cost of one trapped syscall: N 1-byte writes to /dev/null through
#     jetsam-fsprobe, traced vs untraced (trap only), and N 100-byte appends
#     to a data file (trap + offset lookup + undo record per new page).
#  2. The reference node's acked publishes per second, traced vs untraced,
#     for R1 strong+always and R1 strong+2m (node/examples/bench, the node
#     wrapped in jetsam-tracer for the traced run). Goal: traced >= half.
#
# Usage: scripts/bench-tracer.sh [--writes N] [--secs S] [--no-node]
set -euo pipefail
cd "$(dirname "$0")/.."
writes=20000
secs=5
node=1
while [ "$#" -gt 0 ]; do
  case "$1" in
    --writes) writes="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --no-node) node=0; shift ;;
    *) echo "failed to parse the arguments: unknown $1; usage: $0 [--writes N] [--secs S] [--no-node]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "failed to start: the tracer needs root (ptrace + seccomp); rerun as root" >&2
  exit 4
fi

cargo build --release -p jetsam-faults --bins
tracer="$PWD/target/release/jetsam-tracer"
probe="$PWD/target/release/jetsam-fsprobe"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Seconds (float) one command takes.
secs_of() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

run_probe() { # label, traced(0/1), ops...
  local traced="$2"; shift 2
  rm -rf "$work/data" "$work/state"; mkdir -p "$work/data"
  if [ "$traced" = 1 ]; then
    secs_of "$tracer" run --data-dir "$work/data" --state-dir "$work/state" -- "$probe" "$work/data" "$@"
  else
    secs_of "$probe" "$work/data" "$@"
  fi
}

echo "== trapped syscall cost ($writes calls each)"
printf '%-34s %10s %10s %12s\n' case untraced_s traced_s us_per_call
for case in "nullwrites:$writes" "filewrites:f:$writes:100"; do
  u=$(run_probe "$case" 0 "$case")
  t=$(run_probe "$case" 1 "$case")
  per=$(echo "($t - $u) * 1000000 / $writes" | bc -l)
  printf '%-34s %10.3f %10.3f %12.1f\n' "$case" "$u" "$t" "$per"
done

if [ "$node" = 1 ]; then
  cargo build --release -p jetsam-node --bins --examples
  wrapper="$work/jetsam-node-traced"
  # The bench starts "jetsam-node ARGS"; the wrapper runs the same node under
  # the tracer with a state dir beside (outside) its data dir.
  cat >"$wrapper" <<WRAP
#!/usr/bin/env bash
data=""
prev=""
for a in "\$@"; do
  if [ "\$prev" = --data-dir ]; then data="\$a"; fi
  prev="\$a"
done
exec "$tracer" run --data-dir "\$data" --state-dir "\$data.tracer-state" -- "$PWD/target/release/jetsam-node" "\$@"
WRAP
  chmod +x "$wrapper"
  echo
  echo "== reference node, acked publishes/s (R1, 8 clients, ${secs}s per case)"
  printf '%-18s %12s %12s %8s\n' case untraced traced ratio
  for case in "R1 strong always" "R1 strong 2m"; do
    u=$(JETSAM_NODE_BIN="$PWD/target/release/jetsam-node" target/release/examples/bench --secs "$secs" \
          --dir "$work/bench" --only "$case" | awk -v c="$case" 'index($0, c) == 1 { print $(NF-3) }')
    t=$(JETSAM_NODE_BIN="$wrapper" target/release/examples/bench --secs "$secs" \
          --dir "$work/bench" --only "$case" | awk -v c="$case" 'index($0, c) == 1 { print $(NF-3) }')
    ratio=$(echo "$t / $u" | bc -l)
    printf '%-18s %12.0f %12.0f %8.2f\n' "$case" "$u" "$t" "$ratio"
  done
  echo "goal: traced / untraced >= 0.5"
fi

#!/usr/bin/env bash
# Benchmark of `jetsam check` on a synthetic run folder: 10,000,000
# acknowledged publishes (plus invokes, some fail/info) over 5 nodes with 300
# losses and one divergent node (generator: checkers/examples/synth_run.rs).
# Prints wall time, peak RSS and publishes checked per second.
# Goal: under 20 s and under 2 GiB.
#
# Usage: scripts/bench-check.sh [ACKED] (default 10000000)
# Env: BENCH_DIR (default: a fresh temp folder, removed at the end; ~2.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
acked="${1:-10000000}"

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time (for peak RSS)..."
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi

dir="${BENCH_DIR:-}"
if [ -z "$dir" ]; then
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
fi

cargo build --release -p jetsam-harness --bin jetsam
echo "writing the synthetic run folder to $dir ..."
cargo run --release -p jetsam-checkers --example synth_run -- "$dir/run" "$acked" | tee "$dir/synth.txt"
want_lost=$(sed -n 's/^expected: verdict fail, lost \([0-9]*\),.*/\1/p' "$dir/synth.txt")
du -sh "$dir/run"

set +e
/usr/bin/time -v -o "$dir/time.txt" target/release/jetsam check "$dir/run" > "$dir/summary.txt"
code=$?
set -e
head -n 8 "$dir/summary.txt"
echo "exit code: $code (expected 1: the synthetic run loses writes)"

wall=$(sed -n 's/^\tElapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time.txt")
rss_kb=$(sed -n 's/^\tMaximum resident set size (kbytes): //p' "$dir/time.txt")
wall_s=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
user_s=$(sed -n 's/^\tUser time (seconds): //p' "$dir/time.txt")
sys_s=$(sed -n 's/^\tSystem time (seconds): //p' "$dir/time.txt")
echo "wall time:        ${wall_s} s (goal < 20 s)"
echo "CPU time:         ${user_s} s user + ${sys_s} s system (load average now: $(cut -d' ' -f1 /proc/loadavg))"
echo "peak RSS:         $((rss_kb / 1024)) MiB (goal < 2048 MiB)"
echo "publishes/second: $(awk -v n="$acked" -v s="$wall_s" 'BEGIN { printf "%.0f", n / s }')"
got_lost=$(sed -n 's/^  "lost": \([0-9]*\),$/\1/p' "$dir/run/report.json")
echo "lost: $got_lost (generator expects $want_lost)"
[ "$code" -eq 1 ] && [ "$got_lost" = "$want_lost" ]

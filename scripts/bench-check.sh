#!/usr/bin/env bash
# Benchmark of `jetsam check` at soak scale (issue 17): synthetic run folders
# of ACKED acknowledged publishes (plus invokes, 1 in 1000 failed, 1 in 1000
# indeterminate) over NODES nodes with 300 losses in three loss windows and
# one divergent node (generator: checkers/examples/synth_run.rs), in the
# JSON-lines form or the compact form (history.bin, recovered/<node>.bin;
# docs/formats.md "Compact files"). For each size it prints the folder's
# size on disk, wall time, CPU time, peak RSS, the peak size of the
# checker's temporary folder (the streaming engine spills there) and
# publishes checked per second, and checks the verdict and lost count
# against the generator's.
# Each folder is deleted right after it is measured (one at a time: the
# 30M JSON-lines folder is ~7 GB).
# Goal: 100,000,000 x 3 nodes in < 60 s with peak RSS < 2 GiB.
#
# Usage: scripts/bench-check.sh [ACKED:FORM ...]
#   default: 10000000:jsonl 30000000:jsonl 100000000:compact
#   FORM is jsonl or compact; e.g. scripts/bench-check.sh 1000000:jsonl
# Env: NODES (default 3), ENGINE (auto, memory or stream: `jetsam check
# --engine`; default auto, which streams at these sizes), BENCH_DIR
# (default: a fresh temp folder, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${NODES:-3}"
engine="${ENGINE:-auto}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000000:jsonl 30000000:jsonl 100000000:compact)

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
cargo build --release -p jetsam-checkers --example synth_run

rows=()
ok=1
for size in "${sizes[@]}"; do
  acked="${size%%:*}"
  form="${size##*:}"
  case "$form" in
    jsonl) flag="" ;;
    compact) flag="--compact" ;;
    *) echo "unknown form $form (jsonl or compact)" >&2; exit 2 ;;
  esac
  run="$dir/run-$acked-$form"
  echo "== $acked acked x $nodes nodes, $form: writing $run ..."
  # shellcheck disable=SC2086
  target/release/examples/synth_run "$run" "$acked" --nodes "$nodes" $flag | tee "$dir/synth.txt"
  want_lost=$(sed -n 's/^expected: verdict fail, lost \([0-9]*\),.*/\1/p' "$dir/synth.txt")
  disk_mb=$(du -sm "$run" | cut -f1)
  load_before=$(cut -d' ' -f1 /proc/loadavg)
  # The check's temporary folder goes under $dir/tmp; its size is sampled
  # every 0.2 s while the check runs.
  rm -rf "$dir/tmp" && mkdir -p "$dir/tmp"
  set +e
  TMPDIR="$dir/tmp" /usr/bin/time -v -o "$dir/time.txt" \
    target/release/jetsam check "$run" --engine "$engine" > "$dir/summary.txt" &
  pid=$!
  spill_mb=0
  while kill -0 "$pid" 2>/dev/null; do
    now=$(du -sm "$dir/tmp" 2>/dev/null | cut -f1)
    [ "${now:-0}" -gt "$spill_mb" ] && spill_mb=$now
    sleep 0.2
  done
  wait "$pid"
  code=$?
  set -e
  load_after=$(cut -d' ' -f1 /proc/loadavg)
  head -n 5 "$dir/summary.txt"
  wall=$(sed -n 's/^\tElapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time.txt")
  wall_s=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  rss_mb=$(( $(sed -n 's/^\tMaximum resident set size (kbytes): //p' "$dir/time.txt") / 1024 ))
  user_s=$(sed -n 's/^\tUser time (seconds): //p' "$dir/time.txt")
  sys_s=$(sed -n 's/^\tSystem time (seconds): //p' "$dir/time.txt")
  got_lost=$(sed -n 's/^  "lost": \([0-9]*\),$/\1/p' "$run/report.json")
  rate=$(awk -v n="$acked" -v s="$wall_s" 'BEGIN { printf "%.0f", n / s }')
  verdict="exit $code, lost $got_lost (generator: exit 1, lost $want_lost)"
  if [ "$code" -ne 1 ] || [ "$got_lost" != "$want_lost" ]; then
    verdict="$verdict MISMATCH"
    ok=0
  fi
  rows+=("$(printf '%11s %-7s %-6s %8s MB %8s s %7s+%-5s s %6s MiB %6s MB %10s/s  load %s-%s  %s' \
    "$acked" "$form" "$engine" "$disk_mb" "$wall_s" "$user_s" "$sys_s" "$rss_mb" "$spill_mb" "$rate" "$load_before" "$load_after" "$verdict")")
  echo "${rows[-1]}"
  rm -rf "$run"
done

echo
echo "jetsam check, $nodes nodes ($(nproc) cores; load average = other work on the machine, before-after):"
printf '%11s %-7s %-6s %11s %10s %14s %10s %9s %12s\n' acked form engine "on disk" wall "CPU user+sys" "peak RSS" "tmp peak" publishes/s
for r in "${rows[@]}"; do echo "$r"; done
echo "goal: 100000000 x 3 in < 60 s with peak RSS < 2048 MiB"
[ "$ok" -eq 1 ]

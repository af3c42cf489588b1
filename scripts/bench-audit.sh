#!/usr/bin/env bash
# The durability audit's cost (issue 16): acked writes/s of the same traced
# run of the reference node (3 nodes, R3 strong + always, as fast as acks
# come, no fault) without and with `--audit`, alternating, ROUNDS times.
# "Traced without audit": a power-loss line that fires on an event that
# never comes (acks:1000000000) makes every node run under the tracer and
# is reported as a skipped injection. Prints figures; asserts nothing.
#
# Usage: scripts/bench-audit.sh [SECS] [ROUNDS]   (defaults 15 and 2)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-15}"
rounds="${2:-2}"
cargo build --release --workspace --bins
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/traced.toml" <<TOML
name = "bench-audit"
nodes = 3
duration = "${secs}s"
seed = 1
[stream]
replicas = 3
consistency = "strong"
sync = "always"
[workload]
clients = 4
in_flight = 8
[[faults]]
kind = "power-loss"
targets = "all"
on = "acks:1000000000"
TOML
rate() { # run folder -> acked/s over the load
  python3 - "$1" "$secs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1] + "/report.json"))
print(f"{r['acked'] / float(sys.argv[2]):.0f} {r['acked']} {(r.get('audit') or {}).get('acks_at_risk', '-')}")
PY
}
echo "round  mode      acked/s  acked  at-risk"
declare -a plain audited
for i in $(seq 1 "$rounds"); do
  for mode in plain audit; do
    out="$work/$mode-$i"
    flag=""
    [ "$mode" = audit ] && flag="--audit"
    CI=1 target/release/jetsam run "$work/traced.toml" --out "$out" $flag > "$work/$mode-$i.log" 2>&1 || true
    read -r per_s acked risk < <(rate "$out")
    printf '%5s  %-7s %9s %6s %8s\n' "$i" "$mode" "$per_s" "$acked" "$risk"
    if [ "$mode" = plain ]; then plain+=("$per_s"); else audited+=("$per_s"); fi
  done
done
python3 - "${plain[*]}" "${audited[*]}" <<'PY'
import sys
p = [float(x) for x in sys.argv[1].split()]
a = [float(x) for x in sys.argv[2].split()]
mp, ma = sum(p) / len(p), sum(a) / len(a)
print(f"mean: traced {mp:.0f}/s, traced + audit {ma:.0f}/s, audit costs {100 * (mp - ma) / mp:.1f}% of throughput")
PY

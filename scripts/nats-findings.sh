#!/usr/bin/env bash
# Runs the NATS findings suite (scenarios/nats/*.toml, not ci/) against each
# given nats-server version with `jetsam suite --nats-version` and prints one
# table row per scenario and version: verdict (and whether it matched the
# scenario's expect), acked, lost, acked writes missing on the worst
# replica, divergent, loss windows (count and longest), time from start to
# verdict. Measures; asserts nothing (the suite's exit code is reported).
#
# Usage: scripts/nats-findings.sh [OUT_DIR] [VERSION...]
#        (defaults: results/nats-findings-<UTC time>, versions 2.12.1 2.15.1;
#        installs missing servers and builds the binaries first)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-results/nats-findings-$(date -u +%Y%m%dT%H%M%SZ)}"
shift || true
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(2.12.1 2.15.1)
for v in "${versions[@]}"; do "$root/scripts/install-nats.sh" "$v" >/dev/null; done
cargo build --quiet -p jetsam-harness -p jetsam-faults --bins
mkdir -p "$out"
for v in "${versions[@]}"; do
    mkdir -p "$out/$v"
    echo "== jetsam suite scenarios/nats --nats-version $v --out $out/$v" >&2
    set +e
    "$root/target/debug/jetsam" suite scenarios/nats --nats-version "$v" --out "$out/$v" --junit "$out/$v/junit.xml" \
        >"$out/$v/suite.txt" 2>"$out/$v/suite.err"
    echo "$?" >"$out/$v/exit_code"
    set -e
    cat "$out/$v/suite.txt" >&2
done
python3 - "$out" "${versions[@]}" <<'PY'
import json, os, sys, xml.etree.ElementTree as ET
out, versions = sys.argv[1], sys.argv[2:]
print("| scenario | version | verdict | expected | acked | lost | worst replica missing | divergent | loss windows (longest) | command to verdict |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for v in versions:
    base = os.path.join(out, v)
    times = {c.get("name"): float(c.get("time", "0")) for c in ET.parse(os.path.join(base, "junit.xml")).iter("testcase")}
    for name in sorted(times):
        runs = sorted(os.listdir(os.path.join(base, name))) if os.path.isdir(os.path.join(base, name)) else []
        report = os.path.join(base, name, runs[-1], "report.json") if runs else None
        if not report or not os.path.isfile(report):
            print(f"| {name} | {v} | no verdict | | | | | | | {times[name]:.0f} s |")
            continue
        r = json.load(open(report))
        expect = "?"
        resolved = os.path.join(base, name, runs[-1], "scenario.resolved.toml")
        for line in open(resolved):
            if line.startswith("expect"):
                expect = line.split("=")[1].strip().strip('"')
        expect = expect if expect != "?" else "pass"
        worst = max((n["lost"] for n in r["nodes"].values()), default=0)
        windows = r["loss_windows"]
        longest = max(((w["end_ns"] - w["start_ns"]) / 1e9 for w in windows), default=0.0)
        win = f"{len(windows)} ({longest:.1f} s)" if windows else "0"
        mark = "" if r["verdict"] == expect else " (unexpected)"
        print(f"| {name} | {v} | {r['verdict']}{mark} | {expect} | {r['acked']} | {r['lost']} | {worst} | "
              f"{'yes' if r['divergent'] else 'no'} | {win} | {times[name]:.0f} s |")
PY

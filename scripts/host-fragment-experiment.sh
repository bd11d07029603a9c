#!/bin/sh
# Repeats a host fragmentation experiment (default scenarios/host-experiments/fragment-2G.thps)
# N times on the real kernel and prints, per checkpoint, the range (min..max) of the THP
# allocation and compaction counters over the runs. The outcome depends on the whole
# machine's free lists, so it is a distribution, not an exact answer (FINDINGS §13).
# Each run takes the shared host lock itself and pins/restores the THP knobs
# (`thpsim host --allow-sysfs`). Usage: scripts/host-fragment-experiment.sh [N] [FILE]
set -eu
n=${1:-5}
file=${2:-scenarios/host-experiments/fragment-2G.thps}
bin=${THPSIM:-target/release/thpsim}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
i=0
while [ "$i" -lt "$n" ]; do
    flock /tmp/thpsim-host.lock "$bin" host --allow-sysfs --json "$file" >"$dir/run$i.json"
    i=$((i + 1))
done
python3 - "$dir" <<'PY'
import json, pathlib, sys
keys = ["thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success",
        "compact_fail", "compact_migrate_scanned", "compact_free_scanned", "pgmigrate_success",
        "compact_daemon_wake"]
runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("run*.json"))]
print(f"{len(runs)} runs of {runs[0]['file']}")
for ci, cp in enumerate(runs[0]["checkpoints"]):
    print(f"checkpoint {cp['label']}:")
    for k in keys:
        vals = [r["checkpoints"][ci]["counters"].get("vmstat." + k, 0) for r in runs]
        print(f"  {k:28} {min(vals)}..{max(vals)}  {vals}")
PY

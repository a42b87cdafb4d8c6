#!/usr/bin/env bash
# A bundle swapped into a running `watch` (the bundle file replaced by a rename): the switch time (load and
# self-test, from the "type": "model" line), the frame-time hiccup (p99 of frame latency while the bundle loads
# and in the second after the switch, against the rest of the run) and watch's peak memory (GNU time) against the same run without a swap.
#
#   benches/swap.sh FROM.lookout TO.lookout FRAMES_DIR [SECONDS] [ROUNDS]
#
# FROM and TO need the same labels (e.g. the f32 and q4 exports of one run). LOOKOUT_EDGE: the binary (default
# target/release/lookout-edge). Frames: a folder of camera-sized JPEGs, looped at 10 fps.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
from=${1:?usage: benches/swap.sh FROM.lookout TO.lookout FRAMES_DIR [SECONDS] [ROUNDS]}
to=${2:?usage}; frames=${3:?usage}; seconds=${4:-8}; rounds=${5:-3}
scratch_dir
run() { # swap? -> JSON lines in $work/out, peak KiB in $work/peak
    cp "$from" "$work/running.lookout"
    /usr/bin/time -f %M -o "$work/peak" "$edge" watch --json --loop --fps 10 --model "$work/running.lookout" \
        --source "dir:$frames" > "$work/out" 2>/dev/null &
    local pid=$!
    sleep "$((seconds / 2))"
    if [[ $1 == swap ]]; then cp "$to" "$work/incoming.lookout" && mv "$work/incoming.lookout" "$work/running.lookout"; fi
    sleep "$((seconds - seconds / 2))"
    pkill -TERM -P "$pid" -f "$edge" || true
    wait "$pid" || true
}
for round in $(seq 1 "$rounds"); do
    run none; base=$(cat "$work/peak")
    run swap; swapped=$(cat "$work/peak")
    python3 - "$work/out" "$base" "$swapped" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
switch = next((l for l in lines if l.get("type") == "model" and l.get("event") == "switch"), None)
if switch is None:
    sys.exit("no switch in this round: " + str([l for l in lines if l.get("type") == "model"]))
frames = [l for l in lines if l.get("type") == "frame"]
at = switch["frame"]
# While the new bundle loads (on its own thread, the frames before the switch at 10 fps) and the second after.
first = at - int(switch["load_ms"] / 100) - 1
near = sorted(l["latency_ms"] for l in frames if first <= l["frame"] <= at + 10)
rest = sorted(l["latency_ms"] for l in frames if not first <= l["frame"] <= at + 10)
p99 = lambda v: v[min(len(v) - 1, int(0.99 * len(v)))]
print(f"switch after frame {at}: load + self-test {switch['load_ms']:.0f} ms "
      f"({switch['self_test']['frames']} frames); frame latency p99 {p99(near):.1f} ms while loading and the second after, "
      f"{p99(rest):.1f} ms the rest ({len(rest)} frames); max {near[-1]:.1f} ms; "
      f"peak RSS {int(sys.argv[3]) / 1024:.1f} MiB with the swap, {int(sys.argv[2]) / 1024:.1f} MiB without")
PY
done

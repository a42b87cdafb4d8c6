#!/usr/bin/env bash
# `watch --motion` against `watch` on the still-scene video with two visits (tests/src/scene.rs,
# still_with_visits: 126 frames at 10 fps), same binary, interleaved: CPU seconds per minute of video (GNU time),
# the share of frames the model ran on, and the events each run found.
#
#   benches/motion.sh BUNDLE [ROUNDS]
#
# LOOKOUT_EDGE: the binary (default target/release/lookout-edge). The bowl zone is the --roi, as a user would set
# it for this camera.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bundle=${1:?usage: benches/motion.sh BUNDLE [ROUNDS]}
rounds=${2:-3}
scratch_dir
cargo run --release -q -p lookout-e2e --example motion_video -- "$work/video"
for round in $(seq 1 "$rounds"); do
    for mode in every motion; do
        flags=(); [[ $mode == motion ]] && flags=(--motion)
        /usr/bin/time -f "%U %S %e" -o "$work/time" "$edge" watch --json --no-drop --fps 10 --smooth 3 \
            --roi 0.3,0.4,0.4,0.55 --model "$bundle" --source "dir:$work/video" "${flags[@]}" > "$work/out" 2>/dev/null
        python3 - "$mode" "$work/out" $(cat "$work/time") <<'PY'
import json, sys
mode, out, user, system, wall = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
lines = [json.loads(l) for l in open(out) if l.startswith("{")]
frames = [l for l in lines if l.get("type") == "frame"]
ran = sum(1 for f in frames if f.get("model_ran"))
events = [(l["type"], l["label"], l["frame"]) for l in lines if l.get("type") in ("event", "clear")]
print(f"{mode:>6}: {(user + system) / wall * 60:5.1f} CPU s per minute ({user + system:.2f} s over {wall:.1f} s), "
      f"model on {ran}/{len(frames)} frames, events {events}")
PY
    done
done

#!/usr/bin/env bash
# Peak memory (whole process, /usr/bin/time's maximum RSS) of `lookout-edge watch` on a looping MJPEG file of
# 10 cat photos, 60 frames, for each BUNDLE:WEIGHTS given, in alternating rounds so that every variant sees the
# same machine load. Prints each run and, per variant, the median with the range, in MiB.
#
#   benches/watch_peak.sh ROUNDS BUNDLE:WEIGHTS [BUNDLE:WEIGHTS ...]
#   e.g. benches/watch_peak.sh 8 q4.lookout:compact pooled-q4.lookout:compact pooled-q4.lookout:fast
#
# LOOKOUT_EDGE: the binary (default target/edge-release/lookout-edge: what a Pi runs, built for this machine).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rounds=$1; shift
edge=${LOOKOUT_EDGE:-target/edge-release/lookout-edge}
scratch_dir
camera_mjpeg "$work/camera.mjpg" "$photos/Cat" 300 309
declare -A peaks
for ((round = 1; round <= rounds; round++)); do
    for variant in "$@"; do
        bundle=${variant%:*}; weights=${variant##*:}
        mib=$(watch_peak_mib --model "$bundle" --weights "$weights" --source "mjpeg:$work/camera.mjpg" --loop --fps 0 \
            --no-drop --max-frames 60 --json)
        echo "round $round: $variant: $mib MiB"
        peaks[$variant]+="$mib "
    done
done
for variant in "$@"; do
    printf '%s\n' ${peaks[$variant]} | sort -n |
        awk -v v="$variant" '{p[NR]=$1} END {printf "%s: median %.1f MiB (%.1f-%.1f, %d runs)\n", v, p[int((NR + 1) / 2)], p[1], p[NR], NR}'
done

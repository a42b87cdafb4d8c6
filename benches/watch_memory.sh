#!/usr/bin/env bash
# Peak memory of `lookout-edge watch` with no sink but the JSON output, and with all three home sinks on
# (--preview with a viewer on the stream, --mqtt with discovery and frame states, --capture), side by side in
# alternating rounds on the same looping MJPEG file, 300 frames each.
#
#   benches/watch_memory.sh BUNDLE [ROUNDS]
#
# Needs mosquitto, curl and /usr/bin/time. Prints one line per run and the medians.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bundle=$(realpath "$1"); rounds=${2:-3}
scratch_dir
trap 'stop_broker; rm -rf "$work"' EXIT
camera_mjpeg "$work/camera.mjpg" "$photos/Cat" 300 339
mqtt_port=$(free_port)
start_broker "$work/broker" "$mqtt_port"

run() { # $1 = none|all; prints the peak RSS in MB
    local extra=() preview_port
    if [[ $1 == all ]]; then
        preview_port=$(free_port)
        extra=(--preview "127.0.0.1:$preview_port" --mqtt "mqtt://127.0.0.1:$mqtt_port/lookout/mem" --mqtt-discovery
            --mqtt-frames --capture "$work/captured-$RANDOM" --capture-when every:5)
        (sleep 1.5; curl -s -o /dev/null --max-time 60 "http://127.0.0.1:$preview_port/stream.mjpg") &
    fi
    watch_peak_mib --model "$bundle" --source "mjpeg:$work/camera.mjpg" --loop --fps 0 --no-drop --max-frames 300 \
        --json "${extra[@]}"
    wait
}

none=(); all=()
for ((i = 1; i <= rounds; i++)); do
    n=$(run none); a=$(run all)
    echo "round $i: no sinks $n MB, preview + mqtt + capture $a MB"
    none+=("$n"); all+=("$a")
done
echo "median peak RSS: no sinks $(median "${none[@]}") MB, all sinks $(median "${all[@]}") MB"

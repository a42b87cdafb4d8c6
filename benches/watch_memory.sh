#!/usr/bin/env bash
# Peak memory of `lookout-edge watch` with no sink but the JSON output, and with all three home sinks on
# (--preview with a viewer on the stream, --mqtt with discovery and frame states, --capture), side by side in
# alternating rounds on the same looping MJPEG file, 300 frames each.
#
#   benches/watch_memory.sh BUNDLE [ROUNDS]
#
# Needs mosquitto, curl and /usr/bin/time. Prints one line per run and the medians.
set -euo pipefail
bundle=$(realpath "$1"); rounds=${2:-3}
edge=${LOOKOUT_EDGE:-target/release/lookout-edge}
shared=${LOOKOUT_TEST_DATA:-../shared}
work=$(mktemp -d); trap 'kill $broker 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ls "$shared"/data/cats-vs-dogs/Cat/*.jpg | sort | sed -n 300,339p | xargs cat > "$work/camera.mjpg"
mqtt_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mqtt_port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > /dev/null 2>&1 & broker=$!
sleep 0.5

run() { # $1 = none|all; prints the peak RSS in MB
    local extra=() preview_port
    if [[ $1 == all ]]; then
        preview_port=$(free_port)
        extra=(--preview "127.0.0.1:$preview_port" --mqtt "mqtt://127.0.0.1:$mqtt_port/lookout/mem" --mqtt-discovery
            --mqtt-frames --capture "$work/captured-$RANDOM" --capture-when every:5)
        (sleep 1.5; curl -s -o /dev/null --max-time 60 "http://127.0.0.1:$preview_port/stream.mjpg") &
    fi
    /usr/bin/time -f '%M' -o "$work/rss" "$edge" watch --model "$bundle" --source "mjpeg:$work/camera.mjpg" --loop \
        --fps 0 --no-drop --max-frames 300 --json "${extra[@]}" > /dev/null 2> "$work/err" || { cat "$work/err"; exit 1; }
    wait
    awk '{printf "%.1f\n", $1 / 1024}' "$work/rss"
}

none=(); all=()
for ((i = 1; i <= rounds; i++)); do
    n=$(run none); a=$(run all)
    echo "round $i: no sinks $n MB, preview + mqtt + capture $a MB"
    none+=("$n"); all+=("$a")
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }
echo "median peak RSS: no sinks $(median "${none[@]}") MB, all sinks $(median "${all[@]}") MB"

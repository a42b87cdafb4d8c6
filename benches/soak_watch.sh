#!/usr/bin/env bash
# The watch loop with every home sink on, for a long time: `watch` on a looping MJPEG file at 10 fps with
# --preview (one viewer reading the stream throughout), --mqtt (Home Assistant discovery, frame states) and
# --capture (every 20th frame, a 5 MB budget), while the broker is restarted twice. Samples the process's RSS every 10 s and checks at the end
# that every event `watch` printed reached an MQTT subscriber.
#
#   benches/soak_watch.sh BUNDLE SECONDS OUT_DIR [PHOTO_DIR_A PHOTO_DIR_B]
#
# Needs mosquitto + mosquitto-clients and curl. Writes OUT_DIR/{rss.csv,watch.jsonl,watch.err,received.txt,report.json}.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bundle=$(realpath "$1"); seconds=$2; out=$(realpath -m "$3")
a=${4:-$photos/Cat}; b=${5:-$photos/Dog}
mkdir -p "$out"; rm -rf "${out:?}"/*
mqtt_port=$(free_port); preview_port=$(free_port)

# An MJPEG file: runs of 10 photos of each class, 80 in all.
runs=()
for i in $(seq 0 3); do runs+=("$a" $((300 + i * 10)) $((309 + i * 10)) "$b" $((300 + i * 10)) $((309 + i * 10))); done
camera_mjpeg "$out/camera.mjpg" "${runs[@]}"

# A broker that keeps its retained messages and sessions across the restarts below.
broker_conf=("user root" "persistence true" "persistence_location $out/broker/" "autosave_interval 1")
start_broker "$out/broker" "$mqtt_port" "${broker_conf[@]}"
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -q 1 -c -i soak-subscriber -t 'lookout/soak/event' > "$out/received.txt" &
subscriber=$!
sleep 0.3

"$edge" watch --model "$bundle" --source "mjpeg:$out/camera.mjpg" --loop --fps 10 --smooth 3 --json \
    --preview "127.0.0.1:$preview_port" \
    --mqtt "mqtt://127.0.0.1:$mqtt_port/lookout/soak" --mqtt-discovery --mqtt-frames --mqtt-flush-timeout 30 \
    --capture "$out/captured" --capture-when every:20 --capture-interval 0 --capture-max-mb 5 \
    > "$out/watch.jsonl" 2> "$out/watch.err" &
watch=$!
sleep 2
curl -s -o /dev/null "http://127.0.0.1:$preview_port/stream.mjpg" &
viewer=$!

echo "seconds,rss_kb" > "$out/rss.csv"
restarts=("$((seconds / 3))" "$((2 * seconds / 3))")
for ((t = 0; t < seconds; t += 10)); do
    echo "$t,$(awk '/VmRSS/ {print $2}' "/proc/$watch/status")" >> "$out/rss.csv"
    for r in "${restarts[@]}"; do
        if ((t == r / 10 * 10)); then
            stop_broker; sleep 5; start_broker "$out/broker" "$mqtt_port" "${broker_conf[@]}"
        fi
    done
    sleep 10
done
peak=$(awk '/VmHWM/ {print $2}' "/proc/$watch/status")
kill -INT "$watch"; wait "$watch" || true
kill "$viewer" 2>/dev/null || true
sleep 2; kill "$subscriber"; stop_broker

python3 - "$out" "$peak" <<'EOF'
import json, sys, csv
out, peak = sys.argv[1], int(sys.argv[2])
lines = [json.loads(l) for l in open(f"{out}/watch.jsonl") if l.strip()]
printed = {(l["type"], l["frame"]) for l in lines if l["type"] in ("event", "clear")}
received = set()
for l in open(f"{out}/received.txt"):
    e = json.loads(l)
    received.add((e["type"], e["frame"]))
summary = next(l for l in lines if l["type"] == "summary")
mqtt = next(l for l in lines if l["type"] == "mqtt")
rss = [int(r["rss_kb"]) for r in csv.DictReader(open(f"{out}/rss.csv"))]
settled = rss[len(rss) // 6:]  # after the first minute of a 10-minute run: caches warm
report = {
    "frames": summary["frames"], "dropped": summary["dropped"], "failed": summary["failed"],
    "events_printed": len(printed), "events_received": len(received & printed), "missing": sorted(printed - received)[:10],
    "mqtt": mqtt, "rss_mb_first": rss[0] / 1024, "rss_mb_settled_min": min(settled) / 1024,
    "rss_mb_settled_max": max(settled) / 1024, "rss_mb_last": rss[-1] / 1024, "peak_mb": peak / 1024,
    "capture": next((l for l in lines if l["type"] == "capture"), None),
}
json.dump(report, open(f"{out}/report.json", "w"), indent=1)
print(json.dumps(report, indent=1))
EOF

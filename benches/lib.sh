# Sourced by the bench scripts (`source "$(dirname "$0")/lib.sh"`): what each of them needs and used to write out
# again: where the shared data and the binaries are, a looping "camera" file, a loopback broker, free ports,
# medians, and a `watch` run measured by GNU time.

# The shared data, found as the tests find it: $LOOKOUT_TEST_DATA, else ../shared beside the checkout.
shared=$(realpath "${LOOKOUT_TEST_DATA:-../shared}")
photos=$shared/data/cats-vs-dogs
# The binaries: LOOKOUT_BIN's (default target/release), or each its own with LOOKOUT / LOOKOUT_EDGE.
bin=$(realpath -m "${LOOKOUT_BIN:-target/release}")
lookout=${LOOKOUT:-$bin/lookout}
edge=${LOOKOUT_EDGE:-$bin/lookout-edge}

# A scratch folder, removed when the script exits. Sets $work.
scratch_dir() {
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
}

# camera_mjpeg OUT DIR FIRST LAST [DIR FIRST LAST ...]: an MJPEG file as a camera streams one (JPEG files
# concatenated): the photos FIRST..LAST of DIR in name order, runs in the order given (e.g. "$photos/Cat" 300
# 309). With `watch --source mjpeg:OUT --loop` it is a camera that never ends.
camera_mjpeg() {
    local out=$1; shift
    : > "$out"
    while (($#)); do
        ls "$1"/*.jpg | sort | sed -n "$2,$3p" | xargs cat >> "$out"
        shift 3
    done
}

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_broker DIR PORT [CONF LINES...]: mosquitto on 127.0.0.1:PORT, anonymous, its config and log in DIR, the
# extra lines appended to its config. Sets $broker (the PID); `stop_broker` ends it.
start_broker() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$dir/mosquitto.conf"
    printf '%s\n' "$@" >> "$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" >> "$dir/log" 2>&1 &
    broker=$!
    sleep 0.5
}
stop_broker() {
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
}

# median VALUES...: the median (the lower middle of an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'
}

# watch_peak_mib ARGS...: runs `lookout-edge watch ARGS` with its output thrown away and prints its peak RSS
# (GNU time's maximum resident set) in MiB; on failure prints watch's errors and exits.
watch_peak_mib() {
    local rss err
    rss=$(mktemp); err=$(mktemp)
    /usr/bin/time -f '%M' -o "$rss" "$edge" watch "$@" > /dev/null 2> "$err" || { cat "$err"; exit 1; }
    awk '{printf "%.1f\n", $1 / 1024}' "$rss"
    rm -f "$rss" "$err"
}

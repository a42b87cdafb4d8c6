#!/usr/bin/env bash
# Every precision of one training run, measured the way docs/quantization.md's precision table reports it:
#   - export: file size, accuracy and agreement on the test split through the edge runtime (export --json);
#   - load time and x86 latency p50, `lookout-edge bench --threads 1`, all bundles in alternating rounds so that
#     each saw the same machine load (the f16 kinds are skipped there: x86 emulates FP16);
#   - peak memory of `lookout-edge watch` (whole process, /usr/bin/time), 30 frames from a looping MJPEG file.
# q4 bundles are benched both ways the edge can hold their weights (--weights fast, the default, and compact).
#
#   benches/precisions.sh RUN_DIR OUT_DIR [ROUNDS]
#
# LOOKOUT, LOOKOUT_EDGE: the binaries (default target/release/…); ITERS: bench iterations (default 50);
# F16_TEST_IMAGES: test photos the f16 kinds are measured on (default 20: emulated FP16 is slow on x86);
# EXPORT_ARGS: more `lookout export` arguments (e.g. "--max-drop 100" for a backbone with random weights, whose
# accuracy means nothing); PRECISIONS: which to export (default "f32 f32-q4head q4 f16 f16-q4"; the first three
# are always needed for the latency rounds).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
run_dir=$1; out=$2; rounds=${3:-2}
iters=${ITERS:-50}
f16_images=${F16_TEST_IMAGES:-20}
mkdir -p "$out"

precisions=${PRECISIONS:-f32 f32-q4head q4 f16 f16-q4}
for precision in $precisions; do
    read -ra extra <<< "${EXPORT_ARGS:-}"
    [[ $precision == f16* ]] && extra+=(--test-images "$f16_images")
    "$lookout" export --run "$run_dir" --out "$out/$precision.lookout" --precision "$precision" --force --json \
        "${extra[@]}" > "$out/$precision.export.json" 2> "$out/$precision.export.err"
    python3 - "$out/$precision.export.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['precision']:>10}: {r['file_size'] / 1e6:6.1f} MB, accuracy {r['accuracy'] * 100:.2f} % (float "
      f"{r['float_accuracy'] * 100:.2f} %), agreement {r['agreement'] * 100:.2f} %, max prob. diff "
      f"{r['max_probability_diff']:.1e} on {r['test_images']} photos"
      + (f", unknown {r['unknown_rate'] * 100:.1f} %" if r.get('unknown_rate') is not None else ""))
EOF
done

# Latency and load, alternating.
bench() { # $1 = bundle name, $2 = weights; prints "load p50 peak"
    "$edge" bench --model "$out/$1.lookout" --threads 1 --iters "$iters" --weights "$2" --json |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["load_ms"], r["inference_ms"]["p50"], r.get("peak_memory_bytes") or 0)'
}
declare -A p50s loads
for ((round = 1; round <= rounds; round++)); do
    for variant in f32:fast f32-q4head:fast q4:fast q4:compact; do
        name=${variant%%:*}; weights=${variant##*:}
        read -r load p50 _ < <(bench "$name" "$weights")
        echo "round $round: $name --weights $weights: load $load ms, inference p50 $p50 ms"
        p50s[$variant]+="$p50 "; loads[$variant]+="$load "
    done
done
# shellcheck disable=SC2086 # the lists are space-separated numbers
f32_p50=$(median ${p50s[f32:fast]})
for variant in f32:fast f32-q4head:fast q4:fast q4:compact; do
    # shellcheck disable=SC2086
    p50=$(median ${p50s[$variant]})
    # shellcheck disable=SC2086
    echo "median $variant: load $(median ${loads[$variant]}) ms, p50 $p50 ms, $(python3 -c "print(f'{$p50 / $f32_p50:.2f}')")x f32"
done

# Peak memory of watch.
scratch_dir
camera_mjpeg "$work/camera.mjpg" "$photos/Cat" 300 309
for variant in f32:fast f32-q4head:fast q4:fast q4:compact f16:fast f16-q4:fast; do
    name=${variant%%:*}; weights=${variant##*:}
    [[ " $precisions " == *" $name "* ]] || continue
    frames=30
    [[ $name == f16* ]] && frames=2
    mib=$(watch_peak_mib --model "$out/$name.lookout" --weights "$weights" --source "mjpeg:$work/camera.mjpg" --loop \
        --fps 0 --no-drop --max-frames "$frames" --json)
    echo "watch $variant: peak RSS $mib MB ($frames frames)"
done

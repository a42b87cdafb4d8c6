#!/usr/bin/env bash
# `lookout-edge bench` and onnxruntime (benches/edge_reference.py) on the same model, the same synthetic 640x480
# frame and the same thread count, alternating in one script so both see the same machine; prints each round and
# the medians of the inference p50s, with their ratio. Export the two files from one run:
#
#   lookout export --run RUN --out model.lookout --onnx model.onnx
#   benches/edge_side_by_side.sh model.lookout model.onnx [ROUNDS] [THREADS]
#
# LOOKOUT_EDGE: the binary (default target/release/lookout-edge); ITERS: iterations per run (default 100);
# BASELINE_EDGE: a second lookout-edge binary (e.g. one built without lookout-runtime's kernels) benched in
# the same rounds; BASELINE_ENV: variables it runs with (e.g. LOOKOUT_MATMUL_TIER=off: tract's own matrix-product
# kernels, without lookout-runtime's tier).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bundle=${1:?usage: benches/edge_side_by_side.sh MODEL.lookout MODEL.onnx [ROUNDS] [THREADS]}
onnx=${2:?usage: benches/edge_side_by_side.sh MODEL.lookout MODEL.onnx [ROUNDS] [THREADS]}
rounds=${3:-3}
threads=${4:-1}
iters=${ITERS:-100}
here=$(dirname "$0")
p50() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["inference_ms"]["p50"])'; }
edge_p50s=(); ort_p50s=(); base_p50s=()
for round in $(seq 1 "$rounds"); do
    echo "== round $round/$rounds: $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
    e=$("$edge" bench --model "$bundle" --threads "$threads" --iters "$iters" --json | p50)
    reference=$(python3 "$here/edge_reference.py" "$onnx" --threads "$threads" --iters "$iters" --json)
    if [[ $reference == SKIPPED* ]]; then echo "$reference"; exit 0; fi
    o=$(p50 <<< "$reference")
    echo "lookout-edge inference p50 $e ms, onnxruntime $o ms"
    edge_p50s+=("$e"); ort_p50s+=("$o")
    if [[ -n ${BASELINE_EDGE:-} ]]; then
        b=$(env ${BASELINE_ENV:-} "$BASELINE_EDGE" bench --model "$bundle" --threads "$threads" --iters "$iters" --json | p50)
        echo "baseline lookout-edge inference p50 $b ms"
        base_p50s+=("$b")
    fi
done
me=$(median "${edge_p50s[@]}"); mo=$(median "${ort_p50s[@]}")
echo "median inference p50, $threads thread(s): lookout-edge $me ms, onnxruntime $mo ms, ratio $(python3 -c "print(f'{$me / $mo:.2f}')")x"
if [[ ${#base_p50s[@]} -gt 0 ]]; then
    mb=$(median "${base_p50s[@]}")
    echo "baseline lookout-edge $mb ms: $(python3 -c "print(f'{$mb / $mo:.2f}')")x onnxruntime, $(python3 -c "print(f'{$mb / $me:.2f}')")x this build"
    # Each round's own ratio, which a machine whose speed drifts between rounds moves less than the medians.
    python3 - "${base_p50s[*]}" "${edge_p50s[*]}" <<'PY'
import statistics, sys
ratios = [b / e for b, e in zip(map(float, sys.argv[1].split()), map(float, sys.argv[2].split()))]
q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
print(f"baseline / this build, round by round: median {statistics.median(ratios):.3f} (quartiles {q[0]:.3f}-{q[2]:.3f})")
PY
fi

#!/usr/bin/env bash
# A q4 and an f16-q4 bundle on emulated Pi CPUs against the q4 bundle on x86_64, on 24 test photos: labels,
# scores and rejection scores. qemu-user runs the cross-built edge (see .ci/run for the builds):
#   aarch64 Cortex-A72 (Pi 4) --weights compact and fast, armv7 Cortex-A15 compact, aarch64 Cortex-A76 (Pi 5) compact
#   and f16-q4.
#
#   benches/arm_q4.sh DIR        # DIR holds q4.lookout and f16-q4.lookout (benches/precisions.sh writes them;
#                                # without f16-q4.lookout, the Cortex-A76 f16-q4 run is left out)
#
# A64, A32, X86: the three lookout-edge binaries (defaults: target/<triple>/debug, target/debug).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
dir=$1
a64=${A64:-target/aarch64-unknown-linux-gnu/debug/lookout-edge}
a32=${A32:-target/armv7-unknown-linux-gnueabihf/debug/lookout-edge}
x86=${X86:-target/debug/lookout-edge}
mapfile -t imgs < <(ls "$photos"/Dog/*.jpg | sed -n '900,911p'; ls "$photos"/Cat/*.jpg | sed -n '900,911p')
a72() { TRACT_CPU_AARCH64_KIND=a72 qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu "$a64" "$@"; }
a76() { TRACT_CPU_AARCH64_KIND=a75 qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu "$a64" "$@"; }
a15() { TRACT_CPU_ARM32_NEON=true qemu-arm -cpu cortex-a15 -L /usr/arm-linux-gnueabihf "$a32" "$@"; }
"$x86" classify --json --weights compact --model "$dir/q4.lookout" "${imgs[@]}" > "$dir/x86-q4.json"
a72 classify --json --weights compact --model "$dir/q4.lookout" "${imgs[@]}" > "$dir/a72-compact.json"
a72 classify --json --weights fast --model "$dir/q4.lookout" "${imgs[@]}" > "$dir/a72-fast.json"
a15 classify --json --weights compact --model "$dir/q4.lookout" "${imgs[@]}" > "$dir/a15-compact.json"
a76 classify --json --weights compact --model "$dir/q4.lookout" "${imgs[@]}" > "$dir/a76-compact.json"
compared="a72-compact a72-fast a15-compact a76-compact"
if [[ -f $dir/f16-q4.lookout ]]; then
    a76 classify --json --weights compact --model "$dir/f16-q4.lookout" "${imgs[@]}" > "$dir/a76-f16q4.json"
    compared+=" a76-f16q4"
fi
python3 - "$dir" $compared <<'PY'
import json, sys
d = sys.argv[1]
def load(p): return [json.loads(l) for l in open(f"{d}/{p}") if '"path"' in l]
x = load("x86-q4.json")
for name in sys.argv[2:]:
    a = load(f"{name}.json")
    same = sum(p["label"] == q["label"] for p, q in zip(x, a))
    ds = max(abs(p["score"] - q["score"]) for p, q in zip(x, a))
    do = max(abs(p["ood_score"] - q["ood_score"]) for p, q in zip(x, a))
    print(f"{name}: {same}/{len(x)} same labels as x86_64 q4, max score diff {ds:.1e}, max rejection-score diff {do:.1e}")
PY

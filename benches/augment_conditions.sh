#!/usr/bin/env bash
# Plain head vs augmented head, side by side on the same split and seed: clean test accuracy, accuracy under
# each camera condition (through the exported bundle), and the extraction time of each, for one backbone.
#
#   benches/augment_conditions.sh BACKBONE.onnx PRESET WORK_DIR [K...]     (K default: 4)
#
# The plain fit extracts the clean features; each `--augment K` fit reuses them and extracts only the views
# (4 views after 4 are reused by 8). Writes WORK_DIR/{plain,augK}.json and prints one table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
backbone=$(realpath "$1"); preset=$2; work=$(realpath -m "$3"); shift 3
ks=("${@:-4}")
data=$photos
mkdir -p "$work"
fit() { # name, extra args
    local name=$1; shift
    "$lookout" fit --data "$data" --backbone "$backbone" --preprocess "$preset" --work "$work/work" \
        --out "$work/$name.lookout" --conditions --json "$@" > "$work/$name.json"
}
fit plain
for k in "${ks[@]}"; do fit "aug$k" --augment "$k"; done
python3 - "$work" plain "${ks[@]/#/aug}" <<'PY'
import json, sys
work, names = sys.argv[1], sys.argv[2:]
reports = {n: json.load(open(f"{work}/{n}.json")) for n in names}
conds = [c["name"] for c in reports[names[0]]["conditions"]["conditions"]]
print("| condition | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
def row(label, get):
    print(f"| {label} | " + " | ".join(get(reports[n]) for n in names) + " |")
row("clean (bundle)", lambda r: f'{r["conditions"]["clean"]["accuracy"] * 100:.2f} %')
for i, c in enumerate(conds):
    row(c, lambda r, i=i: f'{r["conditions"]["conditions"][i]["accuracy"] * 100:.2f} % (label {r["conditions"]["conditions"][i]["label_accuracy"] * 100:.2f})')
row("**mean of the conditions**", lambda r: f'**{r["conditions"]["mean_accuracy"] * 100:.2f} %**')
row("extraction (this fit)", lambda r: f'{r["extract_seconds"]:.0f} s, {r["backbone_runs"]} backbone runs')
row("bundle", lambda r: f'{r["export"]["file_size"] / 1e6:.1f} MB')
PY

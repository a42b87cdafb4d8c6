#!/usr/bin/env bash
# The user's own camera, measured: a fixed camera at night (tests/src/scene.rs: a real scene photo, real cats and
# other animals pasted at the bowl, dim light, sensor noise, JPEG), fitted as a user would on day one, each
# mechanism added in turn. Lite0 (the shared ONNX file), the tutorial head, 5 epochs, f32 bundles.
#
#   benches/camera_scene.sh WORK_DIR
#   INFRARED=1 benches/camera_scene.sh WORK_DIR   # the camera in its infrared night mode: monochrome frames
#
# Variants (each a whole `lookout fit` with --conditions):
#   photos       the cats-vs-dogs photos only (zero-shot on the camera)
#   day1         + the 6 day-one cat frames' bowl crops in Cat/
#   day1-bg      + --background: the 20 day-one empty frames' bowl crops
#   day1-bg-cam  + --augment 4 --augment-policy camera (rejection calibrated on the views, the default)
#   day1-bg-cam-clean  the same features and head, the rejection calibrated on clean photos (--unknown-clean)
#   day1-bg-cam-mono   day1-bg-cam with a quarter of the views monochrome (`camera,mono=0.25`: for an infrared
#                      night mode)
#   week2-class  day1-bg-cam + week two: 6 bowl crops of the three other animals day1-bg-cam calls Cat (the
#                frames `watch --capture-when event` saved) sorted into a class of their own, Visitor/
#   week2-bg     the same crops sorted into --background instead (the animals become "nothing")
#   week2-class-cats  week2-class, and the 6 crops of the day-one cats come back that week sorted into Cat/
#                (everything `--capture-when event` saved in week two, sorted)
# ONLY="NAME ..." runs (and tabulates) only those variants.
# For each: the later frames through `lookout-edge classify --roi BOWL` (cats called Cat, empty and other animals
# called no pet: nothing, unknown or Visitor; the animals of week two and the three never sorted counted apart),
# the test photos under the eight conditions (right label and kept), the 216 ImageNet photos of other things,
# accepted. Writes WORK_DIR/*.json and prints one table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(realpath -m "$1")
backbone=$shared/models/efficientnet_lite0_features_dynbatch.onnx
bowl=0.3,0.4,0.4,0.55
mkdir -p "$work"

[ -d "$work/scene/later" ] || cargo run --release -q -p lookout-e2e --example camera_scene -- "$work/scene" \
    ${INFRARED:+--infrared} >/dev/null
if [ ! -d "$work/others" ]; then # ImageNet photos that are no dogs or cats (classes 151-285 left out)
    mkdir -p "$work/others"
    awk -F, 'NR > 1 && ($2 < 151 || $2 > 285) { print $1 }' "$shared/data/imagenet-sample/labels.csv" |
        while read -r f; do cp "$shared/data/imagenet-sample/$f" "$work/others/"; done
fi

data_for() { # variant -> data folder
    local dir=$work/data-$1
    if [ ! -d "$dir" ]; then
        cp -r "$work/scene/PetImages" "$dir"
        [ "$1" = photos ] || cp "$work/scene/day1-bowl/cat/"* "$dir/Cat/"
        if [[ $1 == week2* ]]; then
            mkdir -p "$dir/Visitor" && cp "$work/scene/week2-bowl/visitor/"* "$dir/Visitor/"
        fi
        [ "$1" != week2-cats ] || cp "$work/scene/week2-bowl/cat/"* "$dir/Cat/"
    fi
    echo "$dir"
}

fit() { # name, data variant, extra args (the features of another variant are reused with WORK_OF=NAME)
    local name=$1 data
    [ -f "$work/$name.json" ] && return
    [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $name "* ]] || return 0
    data=$(data_for "$2"); shift 2
    local features=${WORK_OF:-$name}
    "$lookout" fit --data "$data" --backbone "$backbone" --preprocess tf-inception --work "$work/work-$features" \
        --out "$work/$name.lookout" --precision f32 --conditions --json "$@" > "$work/$name.fit.json"
    for set in cat empty visitor; do
        "$edge" classify --model "$work/$name.lookout" --roi "$bowl" --json "$work/scene/later/$set" \
            > "$work/$name.$set.jsonl"
    done
    "$edge" classify --model "$work/$name.lookout" --json "$work/others" > "$work/$name.others.jsonl"
    touch "$work/$name.json"
}

fit photos photos
fit day1 day1
fit day1-bg day1 --background "$work/scene/day1-bowl/empty"
fit day1-bg-cam day1 --background "$work/scene/day1-bowl/empty" --augment 4 --augment-policy camera
WORK_OF=day1-bg-cam fit day1-bg-cam-clean day1 --background "$work/scene/day1-bowl/empty" --augment 4 \
    --augment-policy camera --unknown-clean
fit day1-bg-cam-mono day1 --background "$work/scene/day1-bowl/empty" --augment 4 --augment-policy camera,mono=0.25
fit week2-class week2 --background "$work/scene/day1-bowl/empty" --augment 4 --augment-policy camera
if [ ! -d "$work/background-week2" ]; then
    mkdir -p "$work/background-week2"
    cp "$work/scene/day1-bowl/empty/"* "$work/scene/week2-bowl/visitor/"* "$work/background-week2/"
fi
fit week2-bg day1 --background "$work/background-week2" --augment 4 --augment-policy camera
fit week2-class-cats week2-cats --background "$work/scene/day1-bowl/empty" --augment 4 --augment-policy camera

python3 - "$work" ${ONLY:-photos day1 day1-bg day1-bg-cam day1-bg-cam-clean day1-bg-cam-mono week2-class week2-bg week2-class-cats} <<'PY'
import json, sys
work, names = sys.argv[1], sys.argv[2:]
def lines(path):
    return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
def frames(name, s):
    return [l for l in lines(f"{work}/{name}.{s}.jsonl") if "label" in l and "path" in l]
def pet(l):  # called a pet: Cat or Dog, not unknown (the background and a Visitor class are no pet)
    return not l.get("unknown") and not l.get("background") and l["label"] in ("Cat", "Dog")
# The later frames of the three animals sorted in week two: the later frames cycle through the six animals and
# tests/examples/camera_scene.rs sorts the 2nd, 4th and 6th (`skip(1).step_by(2)`), so the odd frame numbers.
def seen(l):
    return int(l["path"].rsplit("-", 2)[-2]) % 2 == 1
rows = {}
for n in names:
    fit = json.load(open(f"{work}/{n}.fit.json"))
    cats, empty, vis, others = (frames(n, s) for s in ("cat", "empty", "visitor", "others"))
    c = fit["conditions"]
    rows[n] = {
        "later cats called Cat": f'{sum(pet(l) and l["label"] == "Cat" for l in cats)}/{len(cats)}',
        "later empty called no pet": f'{sum(not pet(l) for l in empty)}/{len(empty)}',
        "other animals called no pet": f'{sum(not pet(l) for l in vis)}/{len(vis)}',
        "of them, the three of week two": f'{sum(not pet(l) for l in vis if seen(l))}/{sum(map(seen, vis))}',
        "of them, the three never sorted": f'{sum(not pet(l) for l in vis if not seen(l))}/{sum(not seen(l) for l in vis)}',
        "ImageNet others accepted": f'{sum(pet(l) for l in others) / max(len(others), 1) * 100:.1f} %',
        "clean (bundle)": f'{c["clean"]["accuracy"] * 100:.2f} %',
        "mean of the conditions": f'{c["mean_accuracy"] * 100:.2f} %',
        **{k["name"]: f'{k["accuracy"] * 100:.1f} (label {k["label_accuracy"] * 100:.1f})' for k in c["conditions"]},
    }
keys = list(rows[names[0]])
print("| | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for k in keys:
    print(f"| {k} | " + " | ".join(rows[n][k] for n in names) + " |")
PY

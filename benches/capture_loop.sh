#!/usr/bin/env bash
# The retraining loop end to end, measured: fit a first bundle on a few photos, let `watch --capture` pick the
# frames it is unsure of from a "camera" (a dir: source of photos it never saw), correct their labels (here from
# the file names, as a person would by moving files), fit again on old + corrected, and compare both bundles
# on photos neither saw. A third bundle fitted on the same number of camera frames picked at random tells
# whether picking the uncertain ones mattered.
#
#   benches/capture_loop.sh WORK_DIR [PER_CLASS_V1] [UNCERTAIN_BOUND]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
work=$(realpath -m "$1"); per_class=${2:-20}; bound=${3:-0.95}
backbone=(--backbone "$shared/models/efficientnet_lite0_features_dynbatch.onnx" --preprocess tf-inception --pool avg)
rm -rf "$work"; mkdir -p "$work"/{v1/Cat,v1/Dog,camera,test/Cat,test/Dog}
pick() { ls "$photos/$1" | sort -t. -k2 -n | sed -n "$2,$3p"; }
for class in Cat Dog; do
    pick "$class" 1 "$per_class" | while read -r f; do cp "$photos/$class/$f" "$work/v1/$class/"; done
    pick "$class" 101 400 | while read -r f; do cp "$photos/$class/$f" "$work/camera/"; done
    pick "$class" 601 800 | while read -r f; do cp "$photos/$class/$f" "$work/test/$class/"; done
done

fit() { "$lookout" fit --data "$1" --out "$2" "${backbone[@]}" --epochs 10 --json > "$2.fit.json"; }
accuracy() { # bundle → accuracy on test/ (the true class is the folder)
    "$edge" classify --model "$1" --json "$work/test" |
        python3 -c 'import json,sys
rows=[json.loads(l) for l in sys.stdin if l.strip()]
rows=[r for r in rows if "label" in r and "path" in r]
ok=sum(r["label"]==r["path"].split("/")[-2] for r in rows)
print(f"{ok}/{len(rows)}")'
}

fit "$work/v1" "$work/v1.lookout"
"$edge" watch --model "$work/v1.lookout" --source "dir:$work/camera" --fps 0 --no-drop --json \
    --capture "$work/captured" --capture-when "uncertain:$bound" --capture-interval 0 > "$work/watch.jsonl"

# "Correct" what was captured: each sidecar names its source file, whose name says the truth.
cp -r "$work/v1" "$work/v2"
captured=0; wrong=0
for sidecar in "$work"/captured/*/*.json; do
    source=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source"])' "$sidecar")
    saved_as=$(basename "$(dirname "$sidecar")")
    truth=$([[ $(basename "$source") == cat.* ]] && echo Cat || echo Dog)
    [[ $saved_as == "$truth" ]] || wrong=$((wrong + 1))
    cp "${sidecar%.json}.jpg" "$work/v2/$truth/"
    captured=$((captured + 1))
done

# The same number of camera frames, picked at random, labelled the same way.
cp -r "$work/v1" "$work/random"
ls "$work/camera" | shuf --random-source=<(yes) -n "$captured" | while read -r f; do
    truth=$([[ $f == cat.* ]] && echo Cat || echo Dog); cp "$work/camera/$f" "$work/random/$truth/"
done

fit "$work/v2" "$work/v2.lookout"
fit "$work/random" "$work/random.lookout"
echo "camera frames: 600; captured as uncertain (top score < $bound): $captured, of which v1 had $wrong wrong"
echo "v1 ($((2 * per_class)) photos):              $(accuracy "$work/v1.lookout") on 400 unseen photos"
echo "v2 (+ $captured corrected captures):  $(accuracy "$work/v2.lookout")"
echo "v2 with $captured random camera frames: $(accuracy "$work/random.lookout")"

#!/usr/bin/env python3
"""Can the rejection tell another animal at the bowl from the cat? Five banks of the k-NN cosine score, measured.

    python3 benches/camera_rejection.py WORK_DIR     # WORK_DIR of benches/camera_scene.sh, after it ran

Reads the day1-bg-cam features (training photos, their camera views, the day-one crops and the background) and
extracts the later frames' bowl crops (cats, empty, other animals) and the 216 ImageNet photos of other things
with the same backbone. For each bank: the threshold that keeps 97 % of held-out photos and their views (98 %
with views in the bank: lookout's defaults), then what it keeps of the later cats, what it rejects of the other
animals and the empty frames, what it accepts of the other photos. Needs numpy, ffmpeg and the release `lookout` (LOOKOUT_BIN).
"""
import glob, os, subprocess, sys
import numpy as np
from features_io import pooled, read_safetensors

work = os.path.realpath(sys.argv[1])
shared = os.path.realpath(os.environ.get("LOOKOUT_TEST_DATA", "../shared"))
lookout = os.path.join(os.environ.get("LOOKOUT_BIN", "target/release"), "lookout")
features = f"{work}/work-day1-bg-cam/features"
later = f"{work}/rejection/data"

def load(dir, pattern, split="train"):
    names = [l.split("\t")[0] for l in open(f"{dir}/splits/{split}.txt")]
    parts = [read_safetensors(f) for f in sorted(glob.glob(f"{dir}/{pattern}"))]
    index = np.concatenate([p["index"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts]) if "labels" in parts[0] else None
    return np.concatenate([pooled(p["features"]) for p in parts]), labels, index, [names[i] for i in index]

if not os.path.isdir(f"{work}/rejection/features"):
    for kind in ("cat", "empty", "visitor"):  # the bowl zone of 640x480 frames: 0.3,0.4,0.4,0.55
        os.makedirs(f"{later}/{kind}", exist_ok=True)
        for f in glob.glob(f"{work}/scene/later/{kind}/*.jpg"):
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", f, "-vf", "crop=256:264:192:192",
                            f"{later}/{kind}/{os.path.basename(f)}"], check=True)
    subprocess.run(["cp", "-r", f"{work}/others", f"{later}/others"], check=True)
    subprocess.run([lookout, "extract", "--data", later, "--backbone",
                    f"{shared}/models/efficientnet_lite0_features_dynbatch.onnx", "--preprocess", "tf-inception",
                    "--out", f"{work}/rejection/features"], check=True, stdout=subprocess.DEVNULL)

X, L, _, names = load(features, "train-0*.safetensors")
background = L == 2
camera = np.array(["day1" in n for n in names])  # the day-one crops (cats and empty scene)
views = [load(features, f"train-aug-*-v{v}-0*.safetensors")[::2] for v in (1, 2, 3, 4)]
test = {}
for split in ("train", "test"):
    x, l, _, _ = load(f"{work}/rejection/features", f"{split}-0*.safetensors", split)
    for c, kind in enumerate(("cat", "empty", "others", "visitor")):
        test.setdefault(kind, []).append(x[l == c])
test = {k: np.concatenate(v) for k, v in test.items()}
held_out = np.random.default_rng(42).random(len(X)) < 0.1

def coreset(rows, m):  # greedy farthest-point sampling, as lookout's bank
    chosen, nearest = [0], 1 - rows @ rows[0]
    while len(chosen) < min(m, len(rows)):
        far = int(np.argmax(nearest)); chosen.append(far); nearest = np.minimum(nearest, 1 - rows @ rows[far])
    return rows[chosen]

def uncovered(bank, rows, radius, m):  # the farthest-point sampling continued over the views, as lookout's bank
    chosen, nearest = [], 1 - (rows @ bank.T).max(1)
    while len(chosen) < m and nearest.max() > radius:
        far = int(np.argmax(nearest)); chosen.append(far); nearest = np.minimum(nearest, 1 - rows @ rows[far])
    return np.concatenate([bank, rows[chosen]])

def measure(name, in_bank, transform=lambda x: x, with_views=False):
    photos_in_bank = transform(X[~held_out & in_bank])
    bank = coreset(photos_in_bank, 256)
    if with_views:  # and the training views farther from it than its farthest photo
        radius = (1 - (photos_in_bank @ bank.T).max(1)).max()
        bank_views = np.concatenate([transform(vx[~held_out[vi] & in_bank[vi]]) for vx, vi in views])
        bank = uncovered(bank, bank_views, radius, 256)
    score = lambda x: 1 - (transform(x) @ bank.T).max(1)
    photos = held_out & ~camera
    calibration = [score(X[photos])] + [score(vx[photos[vi]]) for vx, vi in views]
    threshold = np.quantile(np.concatenate(calibration), 0.98 if with_views else 0.97)  # as lookout's defaults
    s = {k: score(v) for k, v in test.items()}
    print(f"| {name} | {threshold:.3f} | {np.mean(s['cat'] <= threshold) * 100:.0f} % | "
          f"{np.mean(s['visitor'] > threshold) * 100:.0f} % | {np.mean(s['empty'] > threshold) * 100:.0f} % | "
          f"{np.mean(s['others'] <= threshold) * 100:.1f} % | {s['cat'].min():.2f}-{s['cat'].max():.2f} | "
          f"{s['visitor'].min():.2f}-{s['visitor'].max():.2f} |")

mean_background = X[background].mean(0); mean_background /= np.linalg.norm(mean_background)
def without_scene(x):  # the part of the features the empty scene does not explain
    r = x - np.clip(x @ mean_background, 0, None)[:, None] * mean_background
    return r / np.linalg.norm(r, axis=1, keepdims=True)

print("| bank | threshold | later cats kept | other animals rejected | empty rejected | ImageNet others accepted | cat scores | other animals' scores |")
print("|---|---|---|---|---|---|---|---|")
measure("every training row and the views it does not cover (today)", np.ones(len(X), bool), with_views=True)
measure("every training row, no views", np.ones(len(X), bool))
measure("no background rows", ~background)
measure("photos only (no camera frames)", ~camera)
measure("scene subtracted, no background rows", ~background, without_scene)

#!/usr/bin/env python3
"""Which bank for the rejection when the features have augmented views? Three banks and three keeps, measured.

    python3 benches/rejection_bank.py FEATURES_DIR OOD_FEATURES_DIR [OOD_CLASS]

FEATURES_DIR: a features cache with views (`lookout fit|extract --augment K ...`, its `--work` folder's
`features`). OOD_FEATURES_DIR: a cache of photos of other things by the same backbone (for example
`benches/camera_scene.sh` + `benches/camera_rejection.py`'s WORK/rejection/features, whose class `others`, the
216 ImageNet photos that are no cats or dogs, is the default OOD_CLASS).

The banks: photos only (a 256-row coreset of the training photos: lookout before views joined the bank); union
(a 256-row coreset of the photos and their views together); photos + uncovered views (the photos' coreset, then
the views farther from it than its farthest photo, farthest first, at most 256 more: lookout's bank). Each is
calibrated as `fit` does, on held-out photos and their views; measured on other held-out photos' views (as a
camera delivers the classes), on the cache's test photos (clean) and on the OOD photos (accepted: lower is
better). Means of three random hold-outs (20 % of the training rows, half to calibrate, half to measure).
"""
import glob, json, sys
import numpy as np
from features_io import pooled, read_safetensors

features, ood_dir = sys.argv[1], sys.argv[2]
ood_class = sys.argv[3] if len(sys.argv) > 3 else "others"

def load(pattern):  # pooled, L2-normalised rows (the space the score measures in), labels, dataset indices
    parts = [read_safetensors(f) for f in sorted(glob.glob(pattern))]
    labels = np.concatenate([p["labels"] for p in parts]) if "labels" in parts[0] else None
    return pooled(np.concatenate([p["features"] for p in parts])), labels, np.concatenate([p["index"] for p in parts])

X, _, index = load(f"{features}/train-0*.safetensors")
position = {int(i): k for k, i in enumerate(index)}
views = []
for shard in sorted({f.rsplit("-", 1)[0] for f in glob.glob(f"{features}/train-aug-*.safetensors")}):
    vx, _, vi = load(f"{shard}-*.safetensors")
    views.append((vx, np.array([position[int(i)] for i in vi])))
test, _, _ = load(f"{features}/test-0*.safetensors")
classes = json.load(open(f"{ood_dir}/manifest.json"))["classes"]
ood = np.concatenate([x[l == classes.index(ood_class)] for x, l, _ in
                      (load(f"{ood_dir}/{split}-0*.safetensors") for split in ("train", "test"))])

def farthest(rows, nearest, m, radius):
    chosen = []
    while len(chosen) < m and nearest.max() > radius:
        far = int(np.argmax(nearest)); chosen.append(far); nearest = np.minimum(nearest, 1 - rows @ rows[far])
    return rows[chosen]

def coreset(rows, m):
    return np.concatenate([rows[:1], farthest(rows, 1 - rows @ rows[0], m - 1, -np.inf)])

results = {}
for seed in (1, 2, 3):
    rng = np.random.default_rng(seed)
    held = rng.random(len(X)) < 0.2
    calibrate = held & (rng.random(len(X)) < 0.5)
    measure = held & ~calibrate
    train_views = np.concatenate([vx[~held[vi]] for vx, vi in views])
    photos = coreset(X[~held], 256)
    radius = (1 - (X[~held] @ photos.T).max(1)).max()
    banks = {
        "photos only": photos,
        "union of photos and views": coreset(np.concatenate([X[~held], train_views]), 256),
        "photos + uncovered views (lookout)": np.concatenate(
            [photos, farthest(train_views, 1 - (train_views @ photos.T).max(1), 256, radius)]),
    }
    for name, bank in banks.items():
        score = lambda x: 1 - (x @ bank.T).max(1)
        cal = np.concatenate([score(X[calibrate])] + [score(vx[calibrate[vi]]) for vx, vi in views])
        held_views = np.concatenate([score(vx[measure[vi]]) for vx, vi in views])
        for keep in (0.97, 0.98, 0.99):
            t = np.quantile(cal, keep)
            results.setdefault((name, keep), []).append(
                (np.mean(held_views <= t), np.mean(score(test) <= t), np.mean(score(ood) <= t), len(bank)))

print(f"{len(X)} training photos, {len(views)} views each, {len(test)} test photos, {len(ood)} photos of other things")
print("| bank | keep | held-out views kept | clean test photos kept | other photos accepted | bank rows |")
print("|---|---|---|---|---|---|")
for (name, keep), r in results.items():
    r = np.mean(r, axis=0)
    print(f"| {name} | {keep} | {r[0] * 100:.1f} % | {r[1] * 100:.1f} % | {r[2] * 100:.2f} % | {r[3]:.0f} |")

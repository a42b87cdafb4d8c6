#!/usr/bin/env python3
"""Would a crop to the animal itself tell a visitor at the bowl from the cat? Measured (docs/camera.md).

    python3 benches/camera_subject.py WORK_DIR   # WORK_DIR of benches/camera_scene.sh (its scene/ is enough)

The zone crop of the fixed-camera scene is half porch: the pasted animal fills 70 % of the zone's width and
height, the fence and the bicycle the rest. This finds the subject as a camera could, from what differs from
the empty scene: a background picture (the median of the 20 day-one empty frames, grey, 160 x 120), each frame's
light matched to it over the whole frame (a robust fit of log frame = a log background + b, so dusk and dark
night both compare), the pixels of the zone more than 25 % off, the largest connected region's box, squared and
widened by a margin, clamped to the zone. It then asks the backbone's own ImageNet classifier (the shared Lite0
file with its last layer) what it sees in the later frames' crops: the zone, the subject's box, and the box the
scene pasted (the exact one, `tests/src/scene.rs`), and writes the subject crops (margin 0) to
WORK_DIR/subject/{day1-cat,cat,visitor,empty} for a fit on them:

    cp -r WORK/data-photos D && cp WORK/subject/day1-cat/* D/Cat/   # the day-one cats, cropped to the subject
    lookout fit --data D --background WORK/scene/day1-bowl/empty --augment 4 --augment-policy camera \\
        --backbone .../efficientnet_lite0_features_dynbatch.onnx --preprocess tf-inception --precision f32 \\
        --out subject.lookout
    lookout-edge classify --model subject.lookout --json WORK/subject/visitor   # and cat/, empty/

Needs numpy, scipy, Pillow and onnxruntime.
"""
import glob
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

from imagenet_classifier import kinds, load, top1

work = os.path.realpath(sys.argv[1])
scene = f"{work}/scene"
shared = os.path.realpath(os.environ.get("LOOKOUT_TEST_DATA", "../shared"))
session, _ = load(shared)
ZONE = (0.3, 0.4, 0.4, 0.55)  # BOWL in tests/src/scene.rs
SMALL = (160, 120)
CHANGED = 0.25  # a pixel differs when this far from the light-matched background


def grey(image):
    return np.asarray(image.convert("L").resize(SMALL, Image.BILINEAR), np.float32) + 1


background = np.median(np.stack([grey(Image.open(f)) for f in sorted(glob.glob(f"{scene}/day1/empty/*"))]), 0)
zx0, zy0 = round(ZONE[0] * SMALL[0]), round(ZONE[1] * SMALL[1])
zx1, zy1 = round((ZONE[0] + ZONE[2]) * SMALL[0]), round((ZONE[1] + ZONE[3]) * SMALL[1])


def changed(image):
    """The zone's pixels that differ from the background once the frame's light is matched to it."""
    x = grey(image)
    lx, lb = np.log(x).ravel(), np.log(background).ravel()
    a = np.stack([lb, np.ones_like(lb)], 1)
    keep = np.ones(lb.size, bool)
    for _ in range(3):  # refit on the 70 % that fit best: the visitor is no part of the light
        coef, *_ = np.linalg.lstsq(a[keep], lx[keep], rcond=None)
        residual = np.abs(lx - a @ coef)
        keep = residual < np.quantile(residual, 0.7)
    expected = np.exp(a @ coef).reshape(x.shape)
    differs = np.abs(x - expected) > CHANGED * np.maximum(expected, 0.1 * expected.mean())
    return differs[zy0:zy1, zx0:zx1]


def subject_box(image):
    """(x0, x1, y0, y1) in fractions of the zone, or None when nothing there differs."""
    differs = ndimage.binary_opening(changed(image))
    labels, count = ndimage.label(differs)
    if count == 0:
        return None
    sizes = ndimage.sum(differs, labels, range(1, count + 1))
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < 0.02 * differs.size:
        return None
    ys, xs = np.nonzero(labels == largest)
    h, w = differs.shape
    return xs.min() / w, (xs.max() + 1) / w, ys.min() / h, (ys.max() + 1) / h


def crop(image, box, margin):
    width, height = image.size
    left, top, zw, zh = ZONE[0] * width, ZONE[1] * height, ZONE[2] * width, ZONE[3] * height
    if box is None:
        return image.crop((round(left), round(top), round(left + zw), round(top + zh)))
    x0, x1, y0, y1 = box
    cx, cy = left + (x0 + x1) / 2 * zw, top + (y0 + y1) / 2 * zh
    side = min(max((x1 - x0) * zw, (y1 - y0) * zh) * (1 + 2 * margin), zw, zh)
    l = min(max(cx - side / 2, left), left + zw - side)
    t = min(max(cy - side / 2, top), top + zh - side)
    return image.crop((round(l), round(t), round(l + side), round(t + side)))


def pasted(image):
    """The rectangle tests/src/scene.rs pasted the animal into: 70 % of the zone, bottom-centred."""
    width, height = image.size
    left, top = round(ZONE[0] * width), round(ZONE[1] * height)
    zw, zh = round(ZONE[2] * width), round(ZONE[3] * height)
    vw, vh = zw * 7 // 10, zh * 7 // 10
    return image.crop((left + (zw - vw) // 2, top + zh - vh, left + (zw - vw) // 2 + vw, top + zh))


def tensor(image):  # the classifier's preprocessing (SOURCES.md), the crop resized whole
    a = np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
    return (a / 127.5 - 1).transpose(2, 0, 1)


def seen(crops):
    return kinds(top1(session, [tensor(c) for c in crops]))


frames = {kind: [Image.open(f).convert("RGB") for f in sorted(glob.glob(f"{scene}/later/{kind}/*"))]
          for kind in ("cat", "visitor", "empty")}
boxes = {kind: [subject_box(f) for f in images] for kind, images in frames.items()}

print("| later frames | subject found | its box against the pasted one (mean |error|, zone widths) |")
print("|---|---|---|")
exact = (0.15, 0.85, 0.3, 1.0)
for kind, found in boxes.items():
    hits = [b for b in found if b is not None]
    error = f"{np.mean([np.abs(np.subtract(b, exact)).mean() for b in hits]):.3f}" if hits and kind != "empty" else "-"
    print(f"| {kind} ({len(found)}) | {len(hits)} | {error} |")

print()
print("| crop of the later frames, top-1 of the ImageNet classifier | cats: cat / other animal / object "
      "| visitors: cat / other animal / object |")
print("|---|---|---|")
rows = [("the zone (what `--zone` classifies)", lambda i, b: crop(i, None, 0))]
rows += [(f"the subject's box, margin {m}", lambda i, b, m=m: crop(i, b, m)) for m in (0.1, 0.05, 0.0)]
rows += [("the pasted rectangle (exact)", lambda i, b: pasted(i))]
for name, cut in rows:
    cells = [" / ".join(map(str, seen([cut(i, b) for i, b in zip(frames[k], boxes[k])]))) for k in ("cat", "visitor")]
    print(f"| {name} | {cells[0]} | {cells[1]} |")

for kind, source in (("day1-cat", "day1/cat"), ("cat", "later/cat"), ("visitor", "later/visitor"),
                     ("empty", "later/empty")):
    out = f"{work}/subject/{kind}"
    os.makedirs(out, exist_ok=True)
    for f in sorted(glob.glob(f"{scene}/{source}/*")):
        image = Image.open(f).convert("RGB")
        crop(image, subject_box(image), 0.0).save(f"{out}/{os.path.basename(f)}", quality=95)

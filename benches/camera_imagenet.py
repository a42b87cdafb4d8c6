#!/usr/bin/env python3
"""Does the backbone's own ImageNet classifier know a visitor at the bowl from the cat? Measured.

    python3 benches/camera_imagenet.py WORK_DIR   # WORK_DIR of benches/camera_scene.sh, after camera_rejection.py

Runs the shared EfficientNet-Lite0 *classifier* (the same backbone with its ImageNet layer) over the later bowl
crops of the fixed-camera scene (cats, other animals, empty frames) and counts what its top-1 class is: a cat
class (ImageNet 281-285), an animal of any kind (classes 0-397), or something else (the scene's objects).
Needs numpy, Pillow and onnxruntime.
"""
import glob, os, sys
import numpy as np
from PIL import Image

from imagenet_classifier import kinds, load, top1

work = os.path.realpath(sys.argv[1])
shared = os.path.realpath(os.environ.get("LOOKOUT_TEST_DATA", "../shared"))
session, names = load(shared)

def tensor(path):  # the model's preprocessing (SOURCES.md): shorter side 256, centre 224, [-1, 1]
    image = Image.open(path).convert("RGB")
    w, h = image.size
    s = 256 / min(w, h)
    image = image.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
    w, h = image.size
    l, t = (w - 224) // 2, (h - 224) // 2
    return (np.asarray(image.crop((l, t, l + 224, t + 224)), np.float32) / 127.5 - 1).transpose(2, 0, 1)

print("| bowl crops | top-1 a cat class | top-1 another animal | top-1 an object | most frequent top-1 classes |")
print("|---|---|---|---|---|")
for kind in ("cat", "visitor", "empty"):
    files = sorted(glob.glob(f"{work}/rejection/data/{kind}/*.jpg"))
    top = top1(session, [tensor(f) for f in files])
    cats, animals, objects = kinds(top)
    names_seen, counts = np.unique([names[i] for i in top], return_counts=True)
    frequent = ", ".join(f"{n} {c}" for n, c in sorted(zip(names_seen, counts), key=lambda x: -x[1])[:4])
    print(f"| {kind} ({len(files)}) | {cats} | {animals} | {objects} | {frequent} |")

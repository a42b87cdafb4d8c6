#!/usr/bin/env python3
"""The lean Python peer of `cargo bench -p lookout-host --bench extract`: PIL decode, resize shorter side
to 256 (PIL's bilinear resize, antialiased like torchvision's; torchvision itself is not needed), center crop 224,
(x/255 - 0.5)/0.5, onnxruntime EfficientNet-Lite0 features, batch 1. Exits 0 with a message when
onnxruntime / PIL / numpy are missing.

Usage: python3 benches/extract_reference.py [SHARED_DIR] [IMAGE_DIR]
  (without IMAGE_DIR: cat.1 dog.1 cat.2 ... of the shared photos, N from LOOKOUT_BENCH_IMAGES, default 200;
   with it: every .jpg under IMAGE_DIR, as `lookout extract --data IMAGE_DIR` reads them)
"""
import os
import sys
import time

try:
    import numpy as np
    import onnxruntime as ort
    from pil_reference import TF_INCEPTION, preprocess_file
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e.name} is not importable (pip install onnxruntime pillow numpy)")
    sys.exit(0)

def preprocess(path):
    return preprocess_file(path, TF_INCEPTION)[None]


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "LOOKOUT_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    n = int(os.environ.get("LOOKOUT_BENCH_IMAGES", "200"))
    paths = []
    for i in range(1, (n + 1) // 2 + 1):
        for cls, prefix in (("Cat", "cat"), ("Dog", "dog")):
            paths.append(os.path.join(shared, "data/cats-vs-dogs", cls, f"{prefix}.{i}.jpg"))
    paths = paths[:n]
    if len(sys.argv) > 2:
        paths = sorted(os.path.join(root, f) for root, _, files in os.walk(sys.argv[2])
                       for f in files if f.lower().endswith(".jpg"))
    sess = ort.InferenceSession(
        os.path.join(shared, "models/efficientnet_lite0_features_dynbatch.onnx"),
        providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    t_pre = t_model = 0.0
    start = time.perf_counter()
    for p in paths:
        t0 = time.perf_counter()
        x = preprocess(p)
        t1 = time.perf_counter()
        sess.run(None, {name: x})
        t2 = time.perf_counter()
        t_pre += t1 - t0
        t_model += t2 - t1
    secs = time.perf_counter() - start
    print(f"python peer (PIL resize, onnxruntime {ort.__version__}, batch 1): {len(paths)} images in "
          f"{secs:.2f} s = {len(paths) / secs:.1f} img/s (decode+preprocess {100 * t_pre / secs:.0f}%, "
          f"model {100 * t_model / secs:.0f}%)")


if __name__ == "__main__":
    main()

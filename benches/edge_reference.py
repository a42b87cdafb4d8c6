#!/usr/bin/env python3
"""onnxruntime reference for `lookout-edge bench`: the same float model, the same frame, the same loop.

Export the model twice from one run, as a bundle and as ONNX (same weights, same graph):

    lookout export --run RUN --out model.lookout --onnx model.onnx
    lookout-edge bench --model model.lookout --threads 1 --iters 200 --json
    python3 benches/edge_reference.py model.onnx --threads 1 --iters 200

Both time, per iteration, preprocessing a synthetic 640x480 frame (the same pixels as lookout-edge's
synthetic frame: R = x mod 256, G = y mod 256, B = (x + y) mod 256) into the model's input and one batch-1
inference, after 5 warm-up runs, and report p50/p90/p99, frames/s and the process's peak memory. The
preprocessing recipe is read from the ONNX metadata that `lookout export --onnx` writes; resizing is PIL's
antialiased bilinear (torchvision's reference behaviour).

Exits 0 with a "SKIPPED" line where onnxruntime, numpy or PIL is missing.
"""
import argparse
import json
import resource
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file written by `lookout export --onnx`")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
        from PIL import Image
        from pil_reference import preprocess_image
    except ImportError as e:
        print(f"SKIPPED: {e.name} is not installed (pip install onnxruntime numpy pillow)")
        return 0

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - started) * 1e3
    meta = session.get_modelmeta().custom_metadata_map
    recipe = json.loads(meta["lookout.preprocess"])
    input_name = session.get_inputs()[0].name

    x = np.arange(640, dtype=np.uint32)[None, :].repeat(480, 0)
    y = np.arange(480, dtype=np.uint32)[:, None].repeat(640, 1)
    frame = Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8))

    def preprocess(img):
        return preprocess_image(img, recipe)[None]

    for _ in range(5):
        session.run(None, {input_name: preprocess(frame)})
    pre, inf, total = [], [], []
    wall = time.perf_counter()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        tensor = preprocess(frame)
        t1 = time.perf_counter()
        session.run(None, {input_name: tensor})
        t2 = time.perf_counter()
        pre.append((t1 - t0) * 1e3)
        inf.append((t2 - t1) * 1e3)
        total.append((t2 - t0) * 1e3)
    fps = args.iters / (time.perf_counter() - wall)

    def stats(v):
        v = sorted(v)
        pick = lambda p: v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
        return {"mean": round(sum(v) / len(v), 3), "p50": round(pick(50), 3), "p90": round(pick(90), 3),
                "p99": round(pick(99), 3)}

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"type": "bench", "engine": f"onnxruntime {ort.__version__}", "model": args.model,
              "threads": args.threads, "iters": args.iters, "load_ms": round(load_ms, 3),
              "total_ms": stats(total), "preprocess_ms": stats(pre), "inference_ms": stats(inf),
              "frames_per_s": round(fps, 3), "peak_memory_bytes": peak}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"onnxruntime {ort.__version__}, {args.threads} thread(s), {args.iters} iterations, "
              f"loaded in {load_ms:.0f} ms")
        for key in ("preprocess_ms", "inference_ms", "total_ms"):
            s = result[key]
            print(f"  {key:<14} p50 {s['p50']:.2f}  p90 {s['p90']:.2f}  p99 {s['p99']:.2f}")
        print(f"  frames/s {fps:.1f}, peak memory {peak / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

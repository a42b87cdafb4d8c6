#!/usr/bin/env python3
"""onnxruntime's own per-node profile of an ONNX model (1 thread, CPU): the counterpart of
`lookout-edge bench --profile` for the side-by-side tables of docs/performance.md.

    python3 benches/ort_profile.py model.onnx [--runs 30] [--top 14]

Prints the total per run, the time per op type and the slowest nodes with their output shapes (every figure
is per run, averaged over the warm-up and timed runs alike, as onnxruntime records both)."""
import argparse
import collections
import json
import os
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:
    print(f"SKIPPED: {e} (pip install onnxruntime numpy)")
    sys.exit(0)

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--runs", type=int, default=30)
parser.add_argument("--top", type=int, default=14)
args = parser.parse_args()

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.enable_profiling = True
session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
first = session.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in first.shape]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
warmup = 5
for _ in range(warmup + args.runs):
    session.run(None, {first.name: x})
trace = session.end_profiling()
events = json.load(open(trace))
os.remove(trace)

per_node, per_op, shapes = collections.Counter(), collections.Counter(), {}
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        per_node[e["name"]] += e["dur"]
        per_op[e["args"].get("op_name")] += e["dur"]
        shapes[e["name"]] = e["args"].get("output_type_shape")
ms = lambda us: us / (warmup + args.runs) / 1000
print(f"total {ms(sum(per_node.values())):.2f} ms per run")
for op, us in per_op.most_common():
    print(f"{ms(us):8.2f} ms  {op}")
print("slowest nodes:")
for node, us in per_node.most_common(args.top):
    print(f"{ms(us):8.2f} ms  {node.removesuffix('_kernel_time')} {shapes[node]}")

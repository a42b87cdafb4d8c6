#!/usr/bin/env python3
"""onnxruntime's own per-node profile of an ONNX model (1 thread, CPU): the counterpart of
`lookout-edge bench --profile` for the side-by-side tables of docs/performance.md.

    python3 benches/ort_profile.py model.onnx [--runs 30] [--top 14]

Prints the total per run, the time per op type and the slowest nodes with their output shapes (every figure
is per run, averaged over the warm-up and timed runs alike, as onnxruntime records both).
`benches/blocks_side_by_side.py` imports `profile` from here."""
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

WARMUP = 5


def profile(model, runs):
    """onnxruntime's profile of `model` on one thread over WARMUP + `runs` runs: each node's time and each op
    type's, in ms per run, and each node's output shape (nodes named as onnxruntime names them)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(WARMUP + runs):
        session.run(None, {first.name: x})
    trace = session.end_profiling()
    events = json.load(open(trace))
    os.remove(trace)

    per_node, per_op, shapes = collections.Counter(), collections.Counter(), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"].removesuffix("_kernel_time")
            ms = e["dur"] / (WARMUP + runs) / 1000
            per_node[node] += ms
            per_op[e["args"].get("op_name")] += ms
            shapes[node] = e["args"].get("output_type_shape")
    return per_node, per_op, shapes


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args()
    per_node, per_op, shapes = profile(args.model, args.runs)
    print(f"total {sum(per_node.values()):.2f} ms per run")
    for op, ms in per_op.most_common():
        print(f"{ms:8.2f} ms  {op}")
    print("slowest nodes:")
    for node, ms in per_node.most_common(args.top):
        print(f"{ms:8.2f} ms  {node} {shapes[node]}")

#!/usr/bin/env python3
"""Where the rest of the gap to onnxruntime is, block by block: one bundle's plan (`lookout-edge bench --profile
--json`, every node timed) and onnxruntime's per-node profile of the same model as ONNX, both on 1 thread, in
turn, ROUNDS times; the median of each block's time per run (docs/performance.md).

    python3 benches/blocks_side_by_side.py model.lookout model.onnx [ROUNDS] [--roles]   # LOOKOUT_EDGE=binary

Nodes are grouped by the block their name carries (`_blocks.N` in EfficientNet-Lite's ONNX names and in the
node names tract derives from them), `stem` and the convolution after the last block together as `stem + top`
(onnxruntime's fused node names do not tell them apart), and the head Lookout appends (`lookout_*`) as `head`.
With `--roles`, each block is split into its expansion, depthwise convolution and projection (the packing of
an operand counted with its product), and the stem and the convolution after the last block are told apart.
Needs numpy and onnxruntime (through benches/ort_profile.py).
"""
import collections
import json
import os
import re
import statistics
import subprocess
import sys

from ort_profile import profile  # benches/ort_profile.py: onnxruntime's per-node profile, 1 thread

by_role = "--roles" in sys.argv
args = [a for a in sys.argv[1:] if a != "--roles"]
bundle, onnx = args[0], args[1]
rounds = int(args[2]) if len(args) > 2 else 3
edge = os.environ.get("LOOKOUT_EDGE", "target/release/lookout-edge")


def block(name):
    found = re.search(r"blocks[._]+(\d+)", name)
    if found:
        return f"block {int(found.group(1)):2d}"
    return "head" if "lookout" in name else "stem + top"


def role_ours(name):
    """A node of tract's plan by block and role (tract derives its node names from the ONNX ones)."""
    found = re.search(r"blocks[._]+(\d+)", name)
    if not found:
        if "lookout" in name:
            return "head"
        return "stem" if "stem" in name or name.startswith("___swish_Clip") else "top"
    if "depthwise" in name:
        role = "depthwise"
    elif "project" in name or "_Add_" in name:
        role = "projection"
    else:
        role = "expansion"
    return f"block {int(found.group(1)):2d} {role}"


def role_theirs(name):
    """onnxruntime's node (named after its output) by block and role: each block's first clip follows the
    expansion (block 0 has none: its first clip follows the depthwise convolution), the second the depthwise."""
    found = re.search(r"blocks[._]+(\d+)", name)
    if not found:
        if "lookout" in name:
            return "head"
        return "top" if "features" in name or "_swish_1" in name else "stem"
    number = int(found.group(1))
    if "project" in name or "Add" in name:
        role = "projection"
    elif "_swish_1" in name or (number == 0 and "_swish" in name):
        role = "depthwise"
    else:
        role = "expansion"
    return f"block {number:2d} {role}"


def ours():
    out = subprocess.run([edge, "bench", "--model", bundle, "--threads", "1", "--iters", "30", "--profile",
                          "--json"], check=True, capture_output=True, text=True).stdout
    times = collections.Counter()
    for node in json.loads(out.strip().splitlines()[-1])["profile"]["nodes"]:
        times[(role_ours if by_role else block)(node["node"])] += node["ms"]
    return times


def theirs():
    times = collections.Counter()
    for node, ms in profile(onnx, runs=30)[0].items():
        times[(role_theirs if by_role else block)(node)] += ms
    return times


ours_rounds, theirs_rounds = [], []
for _ in range(rounds):
    ours_rounds.append(ours())
    theirs_rounds.append(theirs())
blocks = sorted(set().union(*ours_rounds, *theirs_rounds))
print("| part | tract (Lookout's plan) | onnxruntime | ratio |")
print("|---|---|---|---|")
total = [0.0, 0.0]
for name in blocks:
    a = statistics.median(r[name] for r in ours_rounds)
    b = statistics.median(r[name] for r in theirs_rounds)
    total[0] += a
    total[1] += b
    print(f"| {name} | {a:.2f} ms | {b:.2f} ms | {a / b:.2f} |" if b > 0 else f"| {name} | {a:.2f} ms | - | - |")
print(f"| sum | {total[0]:.2f} ms | {total[1]:.2f} ms | {total[0] / total[1]:.2f} |")

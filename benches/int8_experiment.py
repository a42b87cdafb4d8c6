#!/usr/bin/env python3
"""Post-training static int8 quantization of an exported Lookout model: what does it cost?

What it measures
----------------
1. Builds one float ONNX graph: the run's backbone (e.g. EfficientNet-Lite0 features, [N,1280,7,7]) followed by the
   run's tutorial head (Flatten -> Gemm fc1 -> Relu -> Gemm fc2 -> Sigmoid), input `input` [N,3,224,224], output
   `prob` [N,1] (probability of class 1). The head weights come from `run/head.safetensors` (PyTorch [out, in]
   layout, hence Gemm transB=1). It checks the float graph on the test split (accuracy should match the Rust
   pipeline's figure to within a few images: the preprocessing here is PIL's, not ours).
2. Quantizes that graph with onnxruntime.quantization (static, calibrated on N seeded images of the TRAIN split)
   in several ways (QDQ / QOperator, per-tensor / per-channel, nodes kept in float, MinMax / Percentile / Entropy
   calibration, plus weight-only and dynamic int8 for the big head matrix) and, for every variant, reports on the
   test split: accuracy, label agreement with the float model, max |prob - prob_float|, file size, the op types in
   the quantized graph, and onnxruntime latency at batch 1 (median of --runs runs, 1 thread and default threads;
   all models are timed round-robin so that background load hits them alike).

Outputs (in --out): float.onnx, one .onnx per variant, results.json, RESULTS_table.md.

How to run
----------
    pip install onnx onnxruntime pillow numpy safetensors
    python3 benches/int8_experiment.py --run /tmp/full/pets-lite0.lookout-work \
        --data /work/shared/data/cats-vs-dogs --out /tmp/int8 --calibration 200

`--run` is a Lookout work dir (holding run/run.json, run/head.safetensors, features/splits/{train,test}.txt); the
split files list `relative/or/absolute/path<TAB>label` per line. `--only a,b` restricts the variants. Exits 0 with a
"SKIPPED: ..." line when onnx / onnxruntime / numpy / PIL / safetensors are missing.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import statistics
import sys
import time

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from pil_reference import preprocess_file
    from safetensors.numpy import load_file as load_safetensors
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIPPED: {e.name} is not importable (pip install onnx onnxruntime pillow numpy safetensors)")
    sys.exit(0)


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------

def read_split(path, data_dir):
    """Lines `path<TAB>label`; relative paths are relative to data_dir. Returns [(abs_path, int_label)]."""
    items = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            p, label = line.rsplit("\t", 1)
            if not os.path.isabs(p):
                p = os.path.join(data_dir, p)
            items.append((p, int(label)))
    return items


def load_images(items, recipe, cache_path):
    """Preprocess a list of images once and cache the tensor ([N,3,224,224] float32) as .npy."""
    if os.path.exists(cache_path):
        x = np.load(cache_path)
        if x.shape[0] == len(items):
            return x
    x = np.stack([preprocess_file(p, recipe) for p, _ in items])
    np.save(cache_path, x)
    return x


class ArrayReader(CalibrationDataReader):
    """Feeds calibration images one by one; set_range() lets onnxruntime calibrate in strides (bounded memory)."""

    def __init__(self, x, input_name="input"):
        self.x, self.name = x, input_name
        self.set_range(0, len(x))

    def __len__(self):
        return len(self.x)

    def set_range(self, start_index, end_index):
        self.it = iter(range(start_index, min(end_index, len(self.x))))

    def get_next(self):
        i = next(self.it, None)
        return None if i is None else {self.name: self.x[i:i + 1]}


# ----------------------------------------------------------------------------------------------------------------
# Float graph
# ----------------------------------------------------------------------------------------------------------------

def build_float_model(backbone_path, head, head_matmul=False):
    """Backbone + Flatten + fc1 + Relu + fc2 + Sigmoid. head_matmul=True writes fc1 as MatMul(x, W^T) + Add instead
    of Gemm (needed by quantize_dynamic, which only handles MatMul)."""
    m = onnx.load(backbone_path)
    g = m.graph
    feat = g.output[0].name
    w1, b1 = head["fc1.weight"], head["fc1.bias"]  # [256, 62720], [256]
    w2, b2 = head["fc2.weight"], head["fc2.bias"]  # [1, 256], [1]
    nodes = [helper.make_node("Flatten", [feat], ["head/flat"], name="head/Flatten", axis=1)]
    if head_matmul:
        g.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(w1.T), "head.fc1.weight_t"),
                              numpy_helper.from_array(b1, "head.fc1.bias")])
        nodes += [helper.make_node("MatMul", ["head/flat", "head.fc1.weight_t"], ["head/fc1_mm"], name="head/fc1/MatMul"),
                  helper.make_node("Add", ["head/fc1_mm", "head.fc1.bias"], ["head/fc1"], name="head/fc1/Add")]
    else:
        g.initializer.extend([numpy_helper.from_array(w1, "head.fc1.weight"),
                              numpy_helper.from_array(b1, "head.fc1.bias")])
        nodes.append(helper.make_node("Gemm", ["head/flat", "head.fc1.weight", "head.fc1.bias"], ["head/fc1"],
                                      name="head/fc1/Gemm", transB=1))
    g.initializer.extend([numpy_helper.from_array(w2, "head.fc2.weight"), numpy_helper.from_array(b2, "head.fc2.bias")])
    nodes += [
        helper.make_node("Relu", ["head/fc1"], ["head/relu"], name="head/Relu"),
        helper.make_node("Gemm", ["head/relu", "head.fc2.weight", "head.fc2.bias"], ["head/logit"],
                         name="head/fc2/Gemm", transB=1),
        helper.make_node("Sigmoid", ["head/logit"], ["prob"], name="head/Sigmoid"),
    ]
    g.node.extend(nodes)
    batch = g.input[0].type.tensor_type.shape.dim[0]
    out = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch.dim_param or batch.dim_value or "N", 1])
    del g.output[:]
    g.output.append(out)
    m.producer_name = "lookout int8_experiment"
    onnx.checker.check_model(m)
    return m


def constants_to_initializers(m):
    """Turn Constant nodes (e.g. the Clip bounds of the exported backbone) into initializers."""
    g = m.graph
    for n in [n for n in g.node if n.op_type == "Constant"]:
        value = next(a for a in n.attribute if a.name == "value")
        t = onnx.TensorProto()
        t.CopyFrom(value.t)
        t.name = n.output[0]
        g.initializer.append(t)
        g.node.remove(n)
    return m


def weight_only_head(float_model_path, out_path):
    """Weight-only int8 for fc1: the [256, 62720] weight is stored int8 (symmetric, per output channel) and expanded
    by a DequantizeLinear in front of the float Gemm. Activations stay float; the file shrinks ~4x for that matrix."""
    m = onnx.load(float_model_path)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    w = numpy_helper.to_array(inits["head.fc1.weight"])
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    g.initializer.remove(inits["head.fc1.weight"])
    g.initializer.extend([numpy_helper.from_array(q, "head.fc1.weight_q"),
                          numpy_helper.from_array(scale, "head.fc1.weight_scale"),
                          numpy_helper.from_array(np.zeros(w.shape[0], np.int8), "head.fc1.weight_zp")])
    dq = helper.make_node("DequantizeLinear", ["head.fc1.weight_q", "head.fc1.weight_scale", "head.fc1.weight_zp"],
                          ["head.fc1.weight"], name="head/fc1/weight_DequantizeLinear", axis=0)
    idx = [i for i, n in enumerate(g.node) if n.name == "head/fc1/Gemm"][0]
    g.node.insert(idx, dq)
    onnx.checker.check_model(m)
    onnx.save(m, out_path)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------

def file_digest(path):
    """Short sha256 of a file, to key the calibration cache on the exact graph calibrated."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads  # 0 = onnxruntime's default
    so.inter_op_num_threads = 1 if threads == 1 else 0
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def predict(path, x, batch=20):
    s = session(path, 0)
    return np.concatenate([s.run(None, {"input": x[i:i + batch]})[0][:, 0] for i in range(0, len(x), batch)])


def op_counts(path):
    m = onnx.load(path, load_external_data=False)
    c = collections.Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type
                            for n in m.graph.node)
    return dict(sorted(c.items(), key=lambda kv: -kv[1]))


def time_round_robin(paths, x1, runs, threads, warmup=3):
    """Median ms per batch-1 inference for each model, runs interleaved across models."""
    sess = {k: session(p, threads) for k, p in paths.items()}
    for s in sess.values():
        for _ in range(warmup):
            s.run(None, {"input": x1})
    times = {k: [] for k in paths}
    for _ in range(runs):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, {"input": x1})
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------------------------

def node_groups(model_path):
    """Named node sets that are candidates to keep in float."""
    m = onnx.load(model_path, load_external_data=False)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    group = lambda n: next((a.i for a in n.attribute if a.name == "group"), 1)
    return {
        "stem": [convs[0].name],
        "convhead": [convs[-1].name],
        "head": [n.name for n in m.graph.node if n.name.startswith("head/")],
        "depthwise": [n.name for n in convs if group(n) > 1],
        # Lite0 has no squeeze-excite; for backbones that do, SE convs are the 1x1 convs fed by GlobalAveragePool.
        "se": [n.name for n in convs if any(p.op_type == "GlobalAveragePool" and p.output[0] == n.input[0]
                                            for p in m.graph.node)],
    }


def variant_specs(groups):
    qop, qdq = QuantFormat.QOperator, QuantFormat.QDQ
    mm, pct, ent = CalibrationMethod.MinMax, CalibrationMethod.Percentile, CalibrationMethod.Entropy
    ex = lambda *names: sorted({n for k in names for n in groups[k]})
    # name: (description, kwargs for quantize_static)
    return {
        "a_qdq_pertensor_minmax": ("QDQ, per-tensor, MinMax", dict(quant_format=qdq, per_channel=False, calibrate_method=mm)),
        "a2_qdq_perchannel_minmax": ("QDQ, per-channel weights, MinMax", dict(quant_format=qdq, per_channel=True, calibrate_method=mm)),
        "b_qop_perchannel_minmax": ("QOperator, per-channel, MinMax", dict(quant_format=qop, per_channel=True, calibrate_method=mm)),
        "b2_qop_perchannel_convonly_minmax": ("QOperator, per-channel, only Conv quantized (QLinearConv; Add/head float)",
                                              dict(quant_format=qop, per_channel=True, calibrate_method=mm, op_types_to_quantize=["Conv"])),
        "c1_qop_pc_minmax_float_stem": ("(b) + stem conv float", dict(quant_format=qop, per_channel=True, calibrate_method=mm, nodes_to_exclude=ex("stem"))),
        "c2_qop_pc_minmax_float_head": ("(b) + head (Gemm/Relu/Sigmoid) float", dict(quant_format=qop, per_channel=True, calibrate_method=mm, nodes_to_exclude=ex("head"))),
        "c3_qop_pc_minmax_float_stem_convhead_head": ("(b) + stem, conv_head and head float",
                                                     dict(quant_format=qop, per_channel=True, calibrate_method=mm, nodes_to_exclude=ex("stem", "convhead", "head"))),
        "c4_qop_pc_minmax_float_depthwise": ("(b) + all depthwise convs float", dict(quant_format=qop, per_channel=True, calibrate_method=mm, nodes_to_exclude=ex("depthwise"))),
        "d1_qop_pc_percentile": ("(b) with Percentile 99.999 calibration", dict(quant_format=qop, per_channel=True, calibrate_method=pct)),
        "d2_qop_pc_entropy": ("(b) with Entropy calibration", dict(quant_format=qop, per_channel=True, calibrate_method=ent)),
        "d3_qdq_pc_entropy": ("QDQ per-channel with Entropy calibration", dict(quant_format=qdq, per_channel=True, calibrate_method=ent)),
        "d4_qdq_pc_percentile": ("QDQ per-channel with Percentile 99.999 calibration", dict(quant_format=qdq, per_channel=True, calibrate_method=pct)),
        "d5_qop_pc_entropy_float_stem": ("(c1) with Entropy calibration", dict(quant_format=qop, per_channel=True, calibrate_method=ent, nodes_to_exclude=ex("stem"))),
        "d6_qop_pc_percentile_float_stem": ("(c1) with Percentile 99.999 calibration", dict(quant_format=qop, per_channel=True, calibrate_method=pct, nodes_to_exclude=ex("stem"))),
        "c5_qdq_pc_minmax_float_stem": ("(a2) + stem conv float", dict(quant_format=qdq, per_channel=True, calibrate_method=mm, nodes_to_exclude=ex("stem"))),
        # Standard-ONNX-ops-only variants (no com.microsoft QLinearAdd/QGemm/QLinearSigmoid, which tract lacks):
        # Clip is listed so that it is fused into QLinearConv's output range (without it the conv output is quantized
        # over its pre-clip range); fc1 is written as MatMul so that it becomes QLinearMatMul.
        "b3_qop_pc_minmax_conv_clip": ("QOperator, per-channel, Conv+Clip only (QLinearConv; Adds/head float)",
                                       dict(quant_format=qop, per_channel=True, calibrate_method=mm, op_types_to_quantize=["Conv", "Clip"])),
        "b4_qop_pc_minmax_stdops": ("QOperator, per-channel, Conv+Clip+MatMul (QLinearConv + QLinearMatMul fc1; Adds, fc2 float)",
                                    dict(model="matmul", quant_format=qop, per_channel=True, calibrate_method=mm, op_types_to_quantize=["Conv", "Clip", "MatMul"])),
        "c6_qop_pc_minmax_stdops_float_stem": ("(b4) + stem conv float",
                                               dict(model="matmul", quant_format=qop, per_channel=True, calibrate_method=mm,
                                                    op_types_to_quantize=["Conv", "Clip", "MatMul"], nodes_to_exclude=ex("stem"))),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="/tmp/full/pets-lite0.lookout-work", help="Lookout work dir (run/ and features/splits/)")
    ap.add_argument("--data", default="/work/shared/data/cats-vs-dogs", help="root of relative paths in the split files")
    ap.add_argument("--out", default="/tmp/int8", help="output folder")
    ap.add_argument("--backbone", default=None, help="backbone ONNX (default: run.json's features.backbone.path)")
    ap.add_argument("--calibration", type=int, default=200, help="calibration images drawn from the train split")
    ap.add_argument("--seed", type=int, default=0, help="seed for the calibration draw")
    ap.add_argument("--runs", type=int, default=30, help="timed batch-1 runs per model and thread setting")
    ap.add_argument("--only", default="", help="comma-separated variant name prefixes (default: all)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    cache = os.path.join(args.out, "cache")
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(args.run, "run", "run.json")) as f:
        run = json.load(f)
    features = run["features"].get("recipe", run["features"])  # run format 2 nests them in "recipe"
    recipe = features["preprocess"]
    backbone = args.backbone or features["backbone"]["path"]
    head = load_safetensors(os.path.join(args.run, "run", "head.safetensors"))
    threshold = float(run.get("threshold", 0.5))
    print("head tensors:", {k: list(v.shape) for k, v in head.items()})

    # --- data: test split, and a seeded calibration draw from the train split --------------------------------
    splits = os.path.join(args.run, "features", "splits")
    test = read_split(os.path.join(splits, "test.txt"), args.data)
    train = read_split(os.path.join(splits, "train.txt"), args.data)
    calib = random.Random(args.seed).sample(train, args.calibration)
    t0 = time.time()
    x_test = load_images(test, recipe, os.path.join(cache, "test.npy"))
    x_cal = load_images(calib, recipe, os.path.join(cache, f"calib_{args.calibration}_seed{args.seed}.npy"))
    y_test = np.array([l for _, l in test])
    print(f"images: test {len(test)} (class 1: {int(y_test.sum())}), calibration {len(calib)} "
          f"(class 1: {sum(l for _, l in calib)}), preprocessing {time.time() - t0:.1f}s")

    # --- step 1: float graph ---------------------------------------------------------------------------------
    float_path = os.path.join(args.out, "float.onnx")
    onnx.save(build_float_model(backbone, head), float_path)
    # quant_pre_process: shape inference + onnxruntime graph optimisation (folds the Clip bounds' Constant nodes into
    # initializers); this is the recommended input for quantize_static.
    prep_path = os.path.join(args.out, "float_prep.onnx")
    quant_pre_process(float_path, prep_path)
    float_mm_path = os.path.join(args.out, "float_fc1matmul.onnx")
    onnx.save(build_float_model(backbone, head, head_matmul=True), float_mm_path)
    # The same prep for the MatMul form, but without onnxruntime's optimiser: it would fuse MatMul+Add back into
    # Gemm (which QOperator quantizes to the com.microsoft QGemm). Constant nodes are folded by hand instead.
    prep_mm_path = os.path.join(args.out, "float_fc1matmul_prep.onnx")
    onnx.save(constants_to_initializers(onnx.load(float_mm_path)), prep_mm_path)
    quant_pre_process(prep_mm_path, prep_mm_path, skip_optimization=True)

    p_float = predict(float_path, x_test)
    pred_float = (p_float >= threshold).astype(int)
    acc_float = float((pred_float == y_test).mean())
    print(f"float accuracy {acc_float * 100:.2f}% ({int((pred_float == y_test).sum())}/{len(y_test)})")
    p_mm = predict(float_mm_path, x_test)
    print(f"float (fc1 as MatMul) max |prob diff| vs Gemm form {np.abs(p_mm - p_float).max():.2e}")

    # --- step 2: quantized variants ---------------------------------------------------------------------------
    groups = node_groups(prep_path)
    print("node groups:", {k: len(v) for k, v in groups.items()})
    specs = variant_specs(groups)
    only = [s for s in args.only.split(",") if s]
    results = collections.OrderedDict()
    paths = collections.OrderedDict(float=float_path)
    results["float"] = dict(desc="float32 (backbone + head)", path=float_path)
    probs = {"float": p_float}

    reader = ArrayReader(x_cal)
    digests = {p: file_digest(p) for p in (prep_path, prep_mm_path)}
    for name, (desc, kw) in specs.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        out_path = os.path.join(args.out, name + ".onnx")
        kw = dict(kw)
        model_tag = kw.pop("model", "gemm")
        src = prep_mm_path if model_tag == "matmul" else prep_path
        # calibration ranges depend on the graph, the op types calibrated and the method: cache them on that key
        cache_key = (f"{model_tag}-{digests[src]}_{'-'.join(sorted(kw.get('op_types_to_quantize') or ['all']))}_"
                     f"{kw['calibrate_method'].name}")
        extra = {"CalibStridedMinMax": 20}  # collect calibration data 20 images at a time (bounded memory)
        if kw["calibrate_method"] == CalibrationMethod.Percentile:
            extra["CalibPercentile"] = 99.999
        t = time.time()
        try:
            reader.set_range(0, len(x_cal))
            quantize_static(src, out_path, reader, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, extra_options=extra,
                            calibration_cache_path=os.path.join(cache, f"ranges_{cache_key}_{args.calibration}_seed{args.seed}.json"),
                            **kw)
        except Exception as e:  # keep going: a failing variant is a result too
            print(f"{name}: quantize_static FAILED: {type(e).__name__}: {e}")
            results[name] = dict(desc=desc, error=f"quantize: {type(e).__name__}: {e}")
            continue
        results[name] = dict(desc=desc, path=out_path, quantize_s=round(time.time() - t, 1))
        paths[name] = out_path
        print(f"{name}: quantized in {time.time() - t:.1f}s")

    # (e) int8 only for the big head matrix.
    if not only or any("e".startswith(o) or o.startswith("e") for o in only):
        e1 = os.path.join(args.out, "e1_dynamic_fc1_matmulinteger.onnx")
        try:
            quantize_dynamic(float_mm_path, e1, weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_quantize=["head/fc1/MatMul"])
            results["e1_dynamic_fc1_matmulinteger"] = dict(desc="dynamic int8 fc1 only (MatMulInteger), rest float", path=e1)
            paths["e1_dynamic_fc1_matmulinteger"] = e1
        except Exception as e:
            results["e1_dynamic_fc1_matmulinteger"] = dict(desc="dynamic int8 fc1 only", error=f"{type(e).__name__}: {e}")
        e2 = os.path.join(args.out, "e2_weightonly_fc1_dequantizelinear.onnx")
        weight_only_head(float_path, e2)
        results["e2_weightonly_fc1_dequantizelinear"] = dict(desc="weight-only int8 fc1 (DequantizeLinear -> float Gemm)", path=e2)
        paths["e2_weightonly_fc1_dequantizelinear"] = e2

    # Accuracy, agreement, prob drift, size, ops.
    for name, path in paths.items():
        r = results[name]
        try:
            p = probs[name] if name in probs else predict(path, x_test)
        except Exception as e:
            r["error"] = f"run: {type(e).__name__}: {e}"
            print(f"{name}: onnxruntime FAILED: {r['error']}")
            continue
        pred = (p >= threshold).astype(int)
        r.update(accuracy=float((pred == y_test).mean()), agreement=float((pred == pred_float).mean()),
                 max_prob_diff=float(np.abs(p - p_float).max()), mean_prob_diff=float(np.abs(p - p_float).mean()),
                 errors=int((pred != y_test).sum()), size_mb=os.path.getsize(path) / 1e6, ops=op_counts(path))
        print(f"{name}: acc {r['accuracy'] * 100:.2f}% agree {r['agreement'] * 100:.2f}% "
              f"max|dp| {r['max_prob_diff']:.4f} size {r['size_mb']:.1f} MB ops {r['ops']}")

    # Latency, batch 1, round-robin over the models that ran.
    ok = {k: v for k, v in paths.items() if "error" not in results[k]}
    x1 = x_test[:1]
    for threads, key in ((1, "ms_1thread"), (0, "ms_default_threads")):
        for k, ms in time_round_robin(ok, x1, args.runs, threads).items():
            results[k][key] = ms
    for k in ok:
        print(f"{k}: {results[k]['ms_1thread']:.2f} ms (1 thread), {results[k]['ms_default_threads']:.2f} ms (default)")

    # Report.
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(dict(args=vars(args), ort=ort.__version__, onnx=onnx.__version__, groups=groups,
                       calibration=[p for p, _ in calib], results=results), f, indent=1)
    lines = ["| variant | accuracy | agreement w/ float | max abs prob diff | mean abs prob diff | size MB | ORT ms 1-thread | ORT ms default |",
             "|---|---|---|---|---|---|---|---|"]
    for k, r in results.items():
        if "accuracy" not in r:
            lines.append(f"| {k} | FAILED: {r.get('error', '?')[:120]} | | | | | | |")
            continue
        lines.append(f"| {k} | {r['accuracy'] * 100:.2f} % ({r['errors']} err) | {r['agreement'] * 100:.2f} % | "
                     f"{r['max_prob_diff']:.4f} | {r['mean_prob_diff']:.4f} | {r['size_mb']:.1f} | {r.get('ms_1thread', float('nan')):.2f} | "
                     f"{r.get('ms_default_threads', float('nan')):.2f} |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "RESULTS_table.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

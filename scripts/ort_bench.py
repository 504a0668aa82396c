#!/usr/bin/env python3
"""onnxruntime's latency on one ONNX classifier, batch 1: warm-up runs, then timed runs.

  ort_bench.py MODEL [--threads N] [--runs 30] [--warmup 5] [--profile]

Prints one JSON object: {"median_ms", "p90_ms", "min_ms", "runs", "threads", "runtime"}, the keys
of `resnext-edge bench --json`. The input is a fixed pseudo-random tensor of the model's shape.
With --profile, onnxruntime's own profiler also times every node, and "profile" lists the time per
layer kind, as `resnext-edge bench --profile` does: convolutions by kernel, stride and groups,
other nodes by operator ({"kind", "layers", "ms_per_run", "share"}, most expensive first).
"""
import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    if a.profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(7).uniform(-2, 2, shape).astype(np.float32)
    for _ in range(a.warmup):
        sess.run(None, {inp.name: x})
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        sess.run(None, {inp.name: x})
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    pick = lambda q: times[round((len(times) - 1) * q)]
    out = {"median_ms": pick(0.5), "p90_ms": pick(0.9), "min_ms": times[0], "runs": a.runs,
           "threads": a.threads, "runtime": "onnxruntime " + ort.__version__}
    if a.profile:
        out["profile"] = profile(a.model, sess.end_profiling(), a.runs + a.warmup)
    print(json.dumps(out))


def profile(model, trace, runs):
    """Node times of onnxruntime's trace, summed per layer kind, per run."""
    import onnx

    kinds = {}
    for n in onnx.load(model, load_external_data=False).graph.node:
        if n.op_type in ("Conv", "QLinearConv"):
            at = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            k, s, g = at.get("kernel_shape", [0])[0], at.get("strides", [1])[0], at.get("group", 1)
            shape = "pointwise 1x1" if k == 1 else (f"grouped {k}x{k} ({g} groups)" if g > 1 else f"{k}x{k}")
            kinds[n.name] = f"{shape}/{s}"
    time, layers = collections.Counter(), collections.defaultdict(set)
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            # Names carry a "_token_N" suffix after fusion passes.
            node = e["name"][: -len("_kernel_time")].rsplit("_token_", 1)[0]
            kind = kinds.get(node, e["args"].get("op_name", "?"))
            time[kind] += e["dur"]
            layers[kind].add(node)
    total = sum(time.values()) or 1
    return [{"kind": k, "layers": len(layers[k]), "ms_per_run": t / 1e3 / runs, "share": t / total}
            for k, t in time.most_common()]


if __name__ == "__main__":
    main()

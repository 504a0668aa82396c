#!/usr/bin/env python3
"""onnxruntime's latency on one ONNX classifier, batch 1: warm-up runs, then timed runs.

  ort_bench.py MODEL [--threads N] [--runs 30] [--warmup 5]

Prints one JSON object: {"median_ms", "p90_ms", "min_ms", "runs", "threads", "runtime"}, the keys
of `resnext-edge bench --json`. The input is a fixed pseudo-random tensor of the model's shape.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
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
    print(json.dumps({"median_ms": pick(0.5), "p90_ms": pick(0.9), "min_ms": times[0], "runs": a.runs,
                      "threads": a.threads, "runtime": "onnxruntime " + ort.__version__}))


if __name__ == "__main__":
    main()

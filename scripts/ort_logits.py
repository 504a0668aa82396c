#!/usr/bin/env python3
"""Logits of an ONNX classifier from onnxruntime, the peer that checks resnext-edge's models.

  ort_logits.py MODEL INPUTS.npy OUT.npy [--threads N]

INPUTS.npy: N x 3 x H x W float32, already preprocessed. The model is run one image at a time
(batch 1), as the runtime runs it; OUT.npy gets N x classes float32. Graph optimizations off
(see main).
"""
import argparse
import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    # The graph as ONNX defines it: a QDQ model's DequantizeLinear -> Conv -> QuantizeLinear in
    # float. onnxruntime's optimizer fuses them into int8 kernels which, on an x86 CPU without
    # VNNI (AVX2 only), add u8 x s8 products in pairs with `vpmaddubsw`, saturating at i16
    # (onnxruntime documents this; its quantizer's `reduce_range` works around it): answers
    # that differ from the model's arithmetic on a few inputs in a hundred.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = np.load(a.inputs).astype(np.float32)
    logits = np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    np.save(a.out, logits.astype(np.float32))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""onnxruntime's post-training quantizer (quantize_static) on a float ONNX classifier: the
baseline resnext-quantize is compared with.

  ort_quantize.py FLOAT.onnx --inputs CALIB.npy -o OUT.onnx [--format qdq|qoperator]
                  [--activation u8|s8] [--method minmax|entropy|percentile]

CALIB.npy holds the calibration images already preprocessed (N x 3 x 224 x 224 float32), so that
both quantizers see exactly the same inputs. Weights are int8 per channel.
"""
import argparse
import os
import tempfile

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process


class Inputs(CalibrationDataReader):
    def __init__(self, x, name):
        self.x, self.name, self.i = x, name, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--inputs", required=True)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--activation", choices=["u8", "s8"], default="u8")
    ap.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax")
    a = ap.parse_args()
    x = np.load(a.inputs).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        pre = os.path.join(d, "pre.onnx")
        quant_pre_process(a.model, pre, skip_symbolic_shape=True)
        quantize_static(pre, a.out, Inputs(x, "input"),
                        quant_format=QuantFormat.QDQ if a.format == "qdq" else QuantFormat.QOperator,
                        per_channel=True,
                        activation_type=QuantType.QUInt8 if a.activation == "u8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                          "percentile": CalibrationMethod.Percentile}[a.method])


if __name__ == "__main__":
    main()

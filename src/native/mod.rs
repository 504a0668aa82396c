//! The native int8 path: a rewrite of the ONNX graph that replaces the int8 convolutions of a
//! ResNeXt (QDQ or QOperator, ours or onnxruntime's) and the stem's max pool by the project's
//! own ops over NHWC u8 activations, with requantization, ReLU and the residual add fused.
//! Consecutive native ops exchange NHWC tensors; the pass converts layouts only where the
//! native region starts and ends. What it does not recognize stays with stock tract.

//!
//! The convolution engine those ops run (geometry, packing, the kernels, the worker threads) is
//! the crate `resnext-kernels` ([`crate::kernels`]), which has no tract in it.

pub mod ops;
pub mod parked;
pub mod rewrite;

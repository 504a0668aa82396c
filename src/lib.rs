//! resnext-edge: ImageNet-class ResNeXt classifiers on small ARM boards, on top of tract.
//!
//! The runtime half of the project: it loads an ONNX model written by `resnext-quantize` (or any
//! ONNX classifier with the same input contract), preprocesses images exactly as mmclassification
//! does, and ranks the classes. It stays lean enough to cross-compile with only a C
//! cross-compiler: no host-only dependency belongs here.

pub mod classify;
pub mod contrib_ops;
pub mod gpio;
pub mod inputs;
pub mod jpeg;
pub mod resnext;
pub use resnext_kernels as kernels;
pub mod labels;
pub mod layers;
pub mod logging;
pub mod metadata;
pub mod model;
pub mod native;
pub mod onnx_build;
pub mod onnx_limits;
pub mod onnx_read;
pub mod preprocess;
#[cfg(test)]
mod scratch_dir;
pub mod stream;
pub mod topk;

//! resnext-quantize: the offline half of resnext-edge. It reads ResNeXt checkpoints as
//! mmclassification, torchvision and timm write them, folds BN, and writes ONNX models for the
//! runtime. Host only: it may depend on crates the board binary must not carry.

pub mod atomic;
pub mod checkpoint;
pub mod evaluate;
pub mod export;
pub mod float_net;
pub mod image_pass;
pub mod infer;
pub mod npy;
pub mod onnx_builder;
pub mod pickle_guard;
pub mod quant;
pub mod random_weights;

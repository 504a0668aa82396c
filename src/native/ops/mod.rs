//! The native ops as tract sees them.
//!
//! The rewrite pass (`super::rewrite`) writes `resnext_edge` nodes into the ONNX graph;
//! the builders here parse them into tract `Expansion`s, which wire the typed ops
//! [`NativeConv`], [`NativeMaxPool`], [`NativeQuantize`] and [`NativeHead`], with weights packed
//! once, at load.

mod conv;
mod head;
mod max_pool;
mod quantize;

pub use conv::NativeConv;
pub use head::NativeHead;
pub use max_pool::NativeMaxPool;
pub use quantize::NativeQuantize;

mod node;

pub use node::{CONV_OP, DOMAIN, HEAD_OP, MAX_POOL_OP, QUANTIZE_OP};

use tract_onnx::model::OnnxOpRegister;

/// Registers the builders of the native ops' nodes with tract's ONNX parser.
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(CONV_OP, conv::builder);
    reg.insert(MAX_POOL_OP, max_pool::builder);
    reg.insert(QUANTIZE_OP, quantize::builder);
    reg.insert(HEAD_OP, head::builder);
}

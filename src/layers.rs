//! What runs each node of a loaded model's plan: a native kernel (and which layer kind) or stock
//! tract. `info` lists it; `bench --profile` groups its timings by it.

use crate::kernels;
use crate::native::ops::{NativeConv, NativeHead, NativeMaxPool, NativeQuantize};
use tract_onnx::prelude::*;

/// One node of the plan as a user reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The layer kind (`grouped 3x3 (32 groups)/2`, `pointwise 1x1/1 + residual`, ...), or
    /// tract's operator name for what stays with tract.
    pub kind: String,
    /// `native <kernel set>: <function>` (the kernel that runs it, and the requantization
    /// when that is a pass of its own), `native generic` or `stock tract`.
    pub kernel: String,
    /// Multiply-accumulates of one image, for the native convolutions.
    pub macs: Option<usize>,
}

/// The layer of `node`, or `None` for constants and the input, which do no work.
pub fn layer(node: &TypedNode) -> Option<Layer> {
    let op: &dyn TypedOp = node.op.as_ref();
    if let Some(c) = op.downcast_ref::<NativeConv>() {
        Some(Layer {
            kind: c.kind(),
            kernel: format!("native {}", c.conv.describe(kernels::selected())),
            macs: Some(c.conv.geom.macs()),
        })
    } else if op.downcast_ref::<NativeMaxPool>().is_some() {
        Some(Layer {
            kind: "max pool".into(),
            kernel: "native generic".into(),
            macs: None,
        })
    } else if let Some(h) = op.downcast_ref::<NativeHead>() {
        Some(Layer {
            kind: "average pool + fully connected".into(),
            kernel: format!("native {}", h.describe()),
            macs: Some(h.macs()),
        })
    } else if op.downcast_ref::<NativeQuantize>().is_some() {
        Some(Layer {
            kind: "input quantization to NHWC".into(),
            kernel: "native generic".into(),
            macs: None,
        })
    } else if op.name() == "Const" || op.name() == "Source" {
        None
    } else {
        Some(Layer {
            kind: op.name().to_string(),
            kernel: "stock tract".into(),
            macs: None,
        })
    }
}

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
    /// `native <kernel set>`, `native generic` or `stock tract`.
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
            kernel: format!("native {}", conv_kernels(&c.conv.geom).name()),
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
            kernel: format!("native {}", without_amx(kernels::selected()).name()),
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

/// The kernel set a convolution runs on: the selected one, except that the AMX kernel takes only
/// dense convolutions with whole 64-byte depths and 32-output panels (the pointwise ones of a
/// ResNeXt); the others run on its AVX-512 VNNI kernels.
fn conv_kernels(g: &crate::kernels::conv::ConvGeometry) -> kernels::Isa {
    let isa = kernels::selected();
    let amx = g.groups == 1 && g.depth_quads().is_multiple_of(64) && g.out_c.is_multiple_of(32);
    if amx {
        isa
    } else {
        without_amx(isa)
    }
}

/// `vnni` for `amx` (the kernels of everything but the AMX tiles).
fn without_amx(isa: kernels::Isa) -> kernels::Isa {
    match isa {
        kernels::Isa::Amx => kernels::Isa::Vnni,
        other => other,
    }
}

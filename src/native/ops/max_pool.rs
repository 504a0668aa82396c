//! `ResnextEdgeMaxPool`: max pooling of NHWC u8 tensors (the stem's), on the kernel crate's
//! `max_pool_nhwc`.

use super::node::{read_usize_attr, unary_u8_rules, window_out, MAX_POOL_OP};
use crate::kernels;
use crate::kernels::conv::MAX_WINDOW;
use crate::kernels::nhwc::max_pool_nhwc;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;

pub(super) fn builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = NativeMaxPool {
        kernel: read_usize_attr(node, "kernel")?,
        stride: read_usize_attr(node, "stride")?,
        pad: read_usize_attr(node, "pad")?,
    };
    ensure!(
        (1..=MAX_WINDOW).contains(&op.kernel)
            && (1..=MAX_WINDOW).contains(&op.stride)
            && op.pad < op.kernel,
        "{}: kernel {} stride {} pad {}",
        node.name,
        op.kernel,
        op.stride,
        op.pad
    );
    Ok((expand(op), vec![]))
}

/// Max pool over NHWC u8.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NativeMaxPool {
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl NativeMaxPool {
    fn out_shape(&self, x: &[usize]) -> TractResult<[usize; 4]> {
        ensure!(x.len() == 4 && x[0] == 1, "NativeMaxPool: input {x:?}");
        let o = |d: usize| window_out(d, self.kernel, self.stride, self.pad);
        Ok([1, o(x[1])?, o(x[2])?, x[3]])
    }
}

impl Expansion for NativeMaxPool {
    fn name(&self) -> StaticName {
        MAX_POOL_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        unary_u8_rules(s, inputs, outputs, None, move |x| self.out_shape(x))
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        target.wire_node(prefix, self.clone(), inputs)
    }
}

impl Op for NativeMaxPool {
    fn name(&self) -> StaticName {
        "NativeMaxPool".into()
    }
    op_as_typed_op!();
}

impl EvalOp for NativeMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let x = inputs[0].try_as_plain_ram()?.as_slice::<u8>()?;
        let os = self.out_shape(&shape)?;
        let mut out = Tensor::zero::<u8>(&os)?;
        max_pool_nhwc(
            x,
            (shape[1], shape[2], shape[3]),
            self.kernel,
            self.stride,
            self.pad,
            out.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
            kernels::threads(),
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for NativeMaxPool {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0]
            .shape
            .as_concrete()
            .context("NativeMaxPool: input shape must be known")?;
        Ok(tvec!(u8::fact(self.out_shape(x)?)))
    }
}

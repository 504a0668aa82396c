//! `ResnextEdgeQuantizeNhwc`: the network input's quantization and change to NHWC in one
//! pass.

use super::node::{read_i32_attr, unary_u8_rules, QUANTIZE_OP};
use crate::kernels;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;

pub(super) fn builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale: f32 = node.get_attr("scale")?;
    let zero = read_i32_attr(node, "zero")?;
    ensure!(
        scale.is_finite() && scale > 0.0 && (0..=255).contains(&zero),
        "{}: scale {scale}, zero point {zero}",
        node.name
    );
    Ok((
        expand(NativeQuantize {
            recip_bits: scale.recip().to_bits(),
            zero: zero as u8,
        }),
        vec![],
    ))
}

/// The network input's `QuantizeLinear` and the change to NHWC in one pass: float
/// `[1, C, H, W]` in, u8 `[1, H, W, C]` out, each value `round_half_even(x * (1 / scale)) +
/// zero`, saturated, as tract's `QuantizeLinearU8` computes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NativeQuantize {
    /// `f32::to_bits` of `1 / scale`.
    recip_bits: u32,
    zero: u8,
}

impl NativeQuantize {
    fn out_shape(x: &[usize]) -> TractResult<[usize; 4]> {
        ensure!(x.len() == 4 && x[0] == 1, "NativeQuantize: input {x:?}");
        Ok([1, x[2], x[3], x[1]])
    }
}

impl Expansion for NativeQuantize {
    fn name(&self) -> StaticName {
        QUANTIZE_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        unary_u8_rules(s, inputs, outputs, Some(f32::datum_type()), Self::out_shape)
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

impl Op for NativeQuantize {
    fn name(&self) -> StaticName {
        "NativeQuantize".into()
    }
    op_as_typed_op!();
}

impl EvalOp for NativeQuantize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let x = inputs[0].try_as_plain_ram()?.as_slice::<f32>()?;
        let os = Self::out_shape(&shape)?;
        let mut out = Tensor::zero::<u8>(&os)?;
        crate::kernels::nhwc::quantize_to_nhwc(
            x,
            (shape[1], shape[2] * shape[3]),
            f32::from_bits(self.recip_bits),
            self.zero,
            out.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
            kernels::threads(),
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for NativeQuantize {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0]
            .shape
            .as_concrete()
            .context("NativeQuantize: input shape must be known")?;
        Ok(tvec!(u8::fact(Self::out_shape(x)?)))
    }
}

//! `ResnextEdgeConv`: the convolution of the rewritten graph, on the kernel crate's
//! [`PackedConv`], its weights packed once, at load, by the rewrite.

use super::node::{read_i32_attr, read_usize_attr, window_out, CONV_OP};
use crate::contrib_ops::konst;
use crate::kernels;
use crate::kernels::conv::{ConvGeometry, LayerRequant, PackedConv};
use crate::native::parked;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;

/// Node attributes and inputs of `ResnextEdgeConv`: inputs `x` (NHWC u8), `bias` (int32 at input
/// scale x weight scale), `multiplier` (f32 per output channel) and, with a residual, `residual`
/// (NHWC u8, shaped as the output); the weights, packed by the rewrite, parked under the key
/// `packed` ([`crate::native::parked`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ConvSpec {
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    in_zero: i32,
    out_zero: i32,
    lo: i32,
    hi: i32,
    /// Residual zero point and `f32::to_bits` of its multiplier.
    residual: Option<(i32, u32)>,
    /// Where the packed weights are parked.
    packed: u64,
}

pub(super) fn builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let residual = if node.input.len() == 4 {
        Some((
            read_i32_attr(node, "residual_zero")?,
            node.get_attr::<f32>("residual_multiplier")?.to_bits(),
        ))
    } else {
        None
    };
    let spec = ConvSpec {
        kernel: read_usize_attr(node, "kernel")?,
        stride: read_usize_attr(node, "stride")?,
        pad: read_usize_attr(node, "pad")?,
        groups: read_usize_attr(node, "group")?,
        in_zero: read_i32_attr(node, "in_zero")?,
        out_zero: read_i32_attr(node, "out_zero")?,
        lo: read_i32_attr(node, "lo")?,
        hi: read_i32_attr(node, "hi")?,
        residual,
        packed: node.get_attr::<i64>("packed")? as u64,
    };
    Ok((expand(spec), vec![]))
}

impl Expansion for ConvSpec {
    fn name(&self) -> StaticName {
        CONV_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3 + self.residual.is_some() as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, u8::datum_type())?;
        s.equals(&outputs[0].rank, 4)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, w| {
            ensure!(
                x.len() == 4 && w.len() == 1,
                "{CONV_OP}: input {x:?}, bias {w:?}"
            );
            let (h, wd) = (x[1].to_usize()?, x[2].to_usize()?);
            let oh = window_out(h, self.kernel, self.stride, self.pad)?;
            let ow = window_out(wd, self.kernel, self.stride, self.pad)?;
            s.equals(
                &outputs[0].shape,
                ShapeFactoid::from(vec![1.to_dim(), oh.to_dim(), ow.to_dim(), w[0].clone()]),
            )
        })
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = target.outlet_fact(inputs[0])?.clone();
        let shape = x
            .shape
            .as_concrete()
            .with_context(|| format!("{prefix}: input shape must be known"))?;
        ensure!(
            shape.len() == 4 && shape[0] == 1,
            "{prefix}: expected a [1, H, W, C] input, got {shape:?}"
        );
        let bias = konst(target, inputs[1], "bias")?;
        let mult = konst(target, inputs[2], "multiplier")?;
        ensure!(
            bias.rank() == 1 && mult.shape() == bias.shape(),
            "{prefix}: bias of shape {:?} and multiplier of shape {:?}",
            bias.shape(),
            mult.shape()
        );
        let geom = ConvGeometry {
            in_h: shape[1],
            in_w: shape[2],
            in_c: shape[3],
            out_c: bias.len(),
            groups: self.groups,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
        };
        geom.check().map_err(|e| format_err!("{prefix}: {e}"))?;
        let byte = 0..=255;
        ensure!(
            byte.contains(&self.in_zero)
                && byte.contains(&self.out_zero)
                && byte.contains(&self.lo)
                && byte.contains(&self.hi)
                && self.lo <= self.hi
                && self
                    .residual
                    .is_none_or(|(z, m)| { byte.contains(&z) && f32::from_bits(m).is_finite() }),
            "{prefix}: zero points and clamp bounds must be bytes (lo <= hi)"
        );
        // Bounded so that no accumulator can overflow: the products add at most
        // 255 * 128 * depth (under 2^29 with the depth bound below).
        let bias_ok = bias
            .try_as_plain_ram()?
            .as_slice::<i32>()?
            .iter()
            .all(|b| b.unsigned_abs() <= 1 << 30);
        let mult_ok = mult
            .try_as_plain_ram()?
            .as_slice::<f32>()?
            .iter()
            .all(|m| m.is_finite());
        ensure!(
            bias_ok && mult_ok,
            "{prefix}: biases must be within 2^30 and multipliers finite"
        );
        ensure!(
            geom.cpg_in() * geom.kernel * geom.kernel <= 1 << 14,
            "{prefix}: a depth of {} is above the supported 16384",
            geom.cpg_in() * geom.kernel * geom.kernel
        );
        let requant = LayerRequant::new(
            self.in_zero,
            mult.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
            self.out_zero,
            (self.lo, self.hi),
            self.residual.map(|(z, m)| (z, f32::from_bits(m))),
        );
        let packed = parked::take(self.packed)
            .with_context(|| format!("{prefix}: no packed weights under its key"))?;
        let conv = PackedConv::from_packed(
            geom,
            packed,
            bias.try_as_plain_ram()?.as_slice::<i32>()?.to_vec(),
            requant,
        )
        .map_err(|e| format_err!("{prefix}: {e}"))?;
        let op = NativeConv {
            conv: Arc::new(conv),
        };
        let mut wires = tvec![inputs[0]];
        if self.residual.is_some() {
            wires.push(inputs[3]);
        }
        target.wire_node(prefix, op, &wires)
    }
}

/// The native convolution in a typed model.
#[derive(Clone, Debug)]
pub struct NativeConv {
    pub conv: Arc<PackedConv>,
}

impl PartialEq for NativeConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.conv, &other.conv) || self.conv == other.conv
    }
}
impl Eq for NativeConv {}

impl NativeConv {
    /// The layer kind, for `info`.
    pub fn kind(&self) -> String {
        let g = &self.conv.geom;
        let shape = if g.kernel == 1 {
            "pointwise 1x1".to_string()
        } else if g.groups > 1 {
            format!("grouped {0}x{0} ({1} groups)", g.kernel, g.groups)
        } else {
            format!("{0}x{0}", g.kernel)
        };
        let fused = if self.conv.requant.residual().is_some() {
            " + residual"
        } else {
            ""
        };
        format!("{shape}/{}{fused}", g.stride)
    }
}

impl Op for NativeConv {
    fn name(&self) -> StaticName {
        "NativeConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.conv.geom;
        Ok(vec![format!(
            "{}: {}x{}x{} -> {} channels, {} MMACs, kernel {}",
            self.kind(),
            g.in_h,
            g.in_w,
            g.in_c,
            g.out_c,
            g.macs() / 1_000_000,
            kernels::selected().name()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for NativeConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.conv.geom;
        let x = inputs[0].try_as_plain_ram()?.as_slice::<u8>()?;
        let residual = match inputs.get(1) {
            Some(r) => Some(r.try_as_plain_ram()?.as_slice::<u8>()?),
            None => None,
        };
        let out_len = g.out_h() * g.out_w() * g.out_c;
        ensure!(
            x.len() == g.in_h * g.in_w * g.in_c && residual.is_none_or(|r| r.len() == out_len),
            "NativeConv: inputs of {} and {:?} values",
            x.len(),
            residual.map(|r| r.len())
        );
        ensure!(
            residual.is_some() == self.conv.requant.residual().is_some(),
            "NativeConv: residual input does not match the op"
        );
        // SAFETY: the buffer is only written until `run_threads` returns, and it writes every
        // byte of it (the canary-filled property tests of `conv` check that), so nothing reads
        // an uninitialized byte; tract's own ops fill outputs the same way.
        let mut out = unsafe { Tensor::uninitialized::<u8>(&[1, g.out_h(), g.out_w(), g.out_c])? };
        let isa = kernels::selected();
        let threads = kernels::threads();
        self.conv.run_threads(
            isa,
            x,
            residual,
            out.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
            threads,
        );
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for NativeConv {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let g = &self.conv.geom;
        let out = [1, g.out_h(), g.out_w(), g.out_c];
        let x = inputs[0].shape.as_concrete();
        ensure!(
            x == Some(&[1, g.in_h, g.in_w, g.in_c][..]),
            "NativeConv built for [1, {}, {}, {}] is fed {:?}",
            g.in_h,
            g.in_w,
            g.in_c,
            inputs[0].shape
        );
        if let Some(r) = inputs.get(1) {
            ensure!(
                r.shape.as_concrete() == Some(&out[..]),
                "NativeConv's residual is {:?}, its output {out:?}",
                r.shape
            );
        }
        Ok(tvec!(u8::fact(out)))
    }
}

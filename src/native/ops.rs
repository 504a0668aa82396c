//! The native ops as tract sees them.
//!
//! The rewrite pass (`super::rewrite`) writes `resnext_edge` nodes into the ONNX graph;
//! the builders here parse them into tract `Expansion`s, which wire the typed ops
//! [`NativeConv`], [`NativeMaxPool`], [`NativeQuantize`] and [`NativeHead`], with weights packed
//! once, at load.

use crate::contrib_ops::konst;
use crate::kernels;
use crate::kernels::conv::{ConvGeometry, PackedConv, Requant, MAX_WINDOW};
use crate::kernels::nhwc::{average_pool_nhwc, max_pool_nhwc};
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;

/// Op type of the native convolution node.
pub const CONV_OP: &str = "ResnextEdgeConv";
/// Op type of the native max pool node.
pub const MAX_POOL_OP: &str = "ResnextEdgeMaxPool";
/// Op type of the native input quantization (float NCHW in, u8 NHWC out).
pub const QUANTIZE_OP: &str = "ResnextEdgeQuantizeNhwc";
/// Op type of the native classifier head (average pool, int8 fully connected, float logits).
pub const HEAD_OP: &str = "ResnextEdgeHead";
/// Domain of the nodes the rewrite writes.
pub const DOMAIN: &str = "resnext_edge";

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert(CONV_OP, conv_builder);
    reg.insert(MAX_POOL_OP, max_pool_builder);
    reg.insert(QUANTIZE_OP, quantize_builder);
    reg.insert(HEAD_OP, head_builder);
}

fn read_usize_attr(node: &NodeProto, name: &str) -> TractResult<usize> {
    let v: i64 = node.get_attr(name)?;
    usize::try_from(v).with_context(|| format!("{}: attribute {name} = {v}", node.name))
}

/// Output size of a window (`kernel`, `stride`, `pad`) sliding over `size`, or an error when
/// the attributes make no sense for it.
fn window_out(size: usize, kernel: usize, stride: usize, pad: usize) -> TractResult<usize> {
    ensure!(
        (1..=MAX_WINDOW).contains(&kernel)
            && (1..=MAX_WINDOW).contains(&stride)
            && pad <= MAX_WINDOW
            && size + 2 * pad >= kernel,
        "window kernel {kernel} stride {stride} pad {pad} does not fit {size}"
    );
    Ok((size + 2 * pad - kernel) / stride + 1)
}

fn read_i32_attr(node: &NodeProto, name: &str) -> TractResult<i32> {
    Ok(node.get_attr::<i64>(name)? as i32)
}

/// Node attributes and inputs of `ResnextEdgeConv`: inputs `x` (NHWC u8), `w` (int8, ONNX
/// order), `bias` (int32 at input scale x weight scale), `multiplier` (f32 per output channel)
/// and, with a residual, `residual` (NHWC u8, shaped as the output).
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
}

fn conv_builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let residual = if node.input.len() == 5 {
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
        check_input_arity(inputs, 4 + self.residual.is_some() as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, u8::datum_type())?;
        s.equals(&outputs[0].rank, 4)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, w| {
            ensure!(
                x.len() == 4 && !w.is_empty(),
                "{CONV_OP}: input {x:?}, weights {w:?}"
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
        let w = konst(target, inputs[1], "weights")?;
        let bias = konst(target, inputs[2], "bias")?;
        let mult = konst(target, inputs[3], "multiplier")?;
        ensure!(
            w.rank() == 4,
            "{prefix}: weights of shape {:?}, expected [out, in / groups, k, k]",
            w.shape()
        );
        let geom = ConvGeometry {
            in_h: shape[1],
            in_w: shape[2],
            in_c: shape[3],
            out_c: w.shape()[0],
            groups: self.groups,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
        };
        geom.check().map_err(|e| format_err!("{prefix}: {e}"))?;
        let want = [geom.out_c, geom.cpg_in(), geom.kernel, geom.kernel];
        ensure!(
            w.shape() == want,
            "{prefix}: weights of shape {:?}, expected {want:?}",
            w.shape()
        );
        ensure!(
            bias.len() == geom.out_c && mult.len() == geom.out_c,
            "{prefix}: {} biases and {} multipliers for {} output channels",
            bias.len(),
            mult.len(),
            geom.out_c
        );
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
        let requant = Requant {
            in_zero: self.in_zero,
            multiplier: mult.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
            out_zero: self.out_zero,
            lo: self.lo,
            hi: self.hi,
            residual: self.residual.map(|(z, m)| (z, f32::from_bits(m))),
        };
        let conv = PackedConv::new(
            geom,
            w.try_as_plain_ram()?.as_slice::<i8>()?,
            bias.try_as_plain_ram()?.as_slice::<i32>()?.to_vec(),
            requant,
            kernels::selected().family(),
        );
        let op = NativeConv {
            conv: Arc::new(conv),
        };
        let mut wires = tvec![inputs[0]];
        if self.residual.is_some() {
            wires.push(inputs[4]);
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
        let fused = if self.conv.requant.residual.is_some() {
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
            residual.is_some() == self.conv.requant.residual.is_some(),
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

fn max_pool_builder(
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

/// Inference rules of a one-input op with a u8 output whose shape `out_shape` computes from
/// the input's (known) shape; `input`, if given, is the input's datum type.
fn unary_u8_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    input: Option<DatumType>,
    out_shape: impl Fn(&[usize]) -> TractResult<[usize; 4]> + 'r,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    if let Some(dt) = input {
        s.equals(&inputs[0].datum_type, dt)?;
    }
    s.equals(&outputs[0].datum_type, u8::datum_type())?;
    s.given(&inputs[0].shape, move |s, x| {
        let x: Vec<usize> = x
            .iter()
            .map(|d| Ok(d.to_usize()?))
            .collect::<TractResult<_>>()?;
        s.equals(
            &outputs[0].shape,
            ShapeFactoid::from(out_shape(&x)?.to_vec()),
        )
    })
}

fn quantize_builder(
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

/// Attributes of `ResnextEdgeHead`: inputs `x` (NHWC u8), `w` (int8 `[classes, channels]`),
/// `bias` and `multiplier` (f32 per class); scales as `f32::to_bits`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HeadSpec {
    x_scale: u32,
    x_zero: i32,
    pool_scale: u32,
    pool_zero: i32,
}

fn head_builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let spec = HeadSpec {
        x_scale: node.get_attr::<f32>("x_scale")?.to_bits(),
        x_zero: read_i32_attr(node, "x_zero")?,
        pool_scale: node.get_attr::<f32>("pool_scale")?.to_bits(),
        pool_zero: read_i32_attr(node, "pool_zero")?,
    };
    let byte = 0..=255;
    let scale_ok = |b: u32| f32::from_bits(b).is_finite() && f32::from_bits(b) > 0.0;
    ensure!(
        byte.contains(&spec.x_zero)
            && byte.contains(&spec.pool_zero)
            && scale_ok(spec.x_scale)
            && scale_ok(spec.pool_scale),
        "{}: scales must be positive and zero points bytes",
        node.name
    );
    Ok((expand(spec), vec![]))
}

impl Expansion for HeadSpec {
    fn name(&self) -> StaticName {
        HEAD_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 4)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.given(&inputs[1].shape, move |s, w| {
            ensure!(w.len() == 2, "{HEAD_OP}: weights {w:?}");
            s.equals(
                &outputs[0].shape,
                ShapeFactoid::from(vec![1.to_dim(), w[0].clone()]),
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
            shape.len() == 4 && shape[0] == 1 && shape[1] * shape[2] > 0,
            "{prefix}: expected a [1, H, W, C] input, got {shape:?}"
        );
        let w = konst(target, inputs[1], "weights")?;
        let bias = konst(target, inputs[2], "bias")?;
        let mult = konst(target, inputs[3], "multiplier")?;
        let (classes, channels) = match w.shape() {
            &[n, c] => (n, c),
            other => bail!("{prefix}: weights of shape {other:?}, expected [classes, channels]"),
        };
        ensure!(
            channels == shape[3] && (1..=1 << 14).contains(&channels) && classes > 0,
            "{prefix}: {channels} weight columns for {} channels (at most 16384)",
            shape[3]
        );
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let mult = mult.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        ensure!(
            bias.len() == classes && mult.len() == classes,
            "{prefix}: {} biases and {} multipliers for {classes} classes",
            bias.len(),
            mult.len()
        );
        let geom = ConvGeometry {
            in_h: 1,
            in_w: 1,
            in_c: channels,
            out_c: classes,
            groups: 1,
            kernel: 1,
            stride: 1,
            pad: 0,
        };
        geom.check().map_err(|e| format_err!("{prefix}: {e}"))?;
        // Only the weights, the input zero point and the bias (none: it is added in float) of
        // the packed convolution are used.
        let requant = Requant {
            in_zero: self.pool_zero,
            multiplier: vec![1.0; classes],
            out_zero: 0,
            lo: 0,
            hi: 255,
            residual: None,
        };
        let fc = PackedConv::new(
            geom,
            w.try_as_plain_ram()?.as_slice::<i8>()?,
            vec![0; classes],
            requant,
            kernels::selected().family(),
        );
        let op = NativeHead {
            fc: Arc::new(fc),
            bias,
            mult,
            x: (f32::from_bits(self.x_scale), self.x_zero),
            pool: (f32::from_bits(self.pool_scale), self.pool_zero),
        };
        target.wire_node(prefix, op, &inputs[..1])
    }
}

/// A classifier's head on int8 activations: global average pool of the last NHWC tensor,
/// requantized as the model says ([`average_pool_nhwc`]), then the fully connected layer on the
/// int8 kernels, `logit[o] = (sum_c (pooled[c] - pool_zero) * w[o][c]) as f32 * mult[o] +
/// bias[o]` (`mult` = pool scale x weight scale): integer sums and two f32 operations per
/// value, so every ISA gives the same bits, where the float layers they replace did not.
#[derive(Clone, Debug)]
pub struct NativeHead {
    fc: Arc<PackedConv>,
    bias: Vec<f32>,
    mult: Vec<f32>,
    x: (f32, i32),
    pool: (f32, i32),
}

impl PartialEq for NativeHead {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.fc, &other.fc)
    }
}
impl Eq for NativeHead {}

impl NativeHead {
    /// Multiply-accumulates of the fully connected layer.
    pub fn macs(&self) -> usize {
        self.fc.geom.macs()
    }

    /// What runs the fully connected layer: the kernel set and its dot kernel.
    pub fn describe(&self) -> String {
        let set = self.fc.kernels(kernels::selected());
        format!("{}: {}", set.isa.name(), set.dot.name)
    }

    /// The logits of one NHWC image (`pixels` x `channels` bytes).
    pub fn logits(&self, x: &[u8], pixels: usize) -> Vec<f32> {
        let channels = self.fc.geom.in_c;
        let mut pooled = vec![0u8; channels];
        average_pool_nhwc(x, (pixels, channels), self.x, self.pool, &mut pooled);
        let acc = self
            .fc
            .accumulate_pixel(kernels::selected(), &pooled, kernels::threads());
        acc.iter()
            .zip(&self.mult)
            .zip(&self.bias)
            .map(|((&a, &m), &b)| a as f32 * m + b)
            .collect()
    }
}

impl Op for NativeHead {
    fn name(&self) -> StaticName {
        "NativeHead".into()
    }
    op_as_typed_op!();
}

impl EvalOp for NativeHead {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let x = inputs[0].try_as_plain_ram()?.as_slice::<u8>()?;
        ensure!(
            shape.len() == 4
                && shape[3] == self.fc.geom.in_c
                && x.len() == shape.iter().product::<usize>(),
            "NativeHead: input {shape:?}"
        );
        let logits = self.logits(x, shape[1] * shape[2]);
        let n = logits.len();
        Ok(tvec!(Tensor::from_shape(&[1, n], &logits)?.into_tvalue()))
    }
}

impl TypedOp for NativeHead {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0]
            .shape
            .as_concrete()
            .context("NativeHead: input shape must be known")?;
        ensure!(
            x.len() == 4 && x[0] == 1 && x[3] == self.fc.geom.in_c && x[1] * x[2] > 0,
            "NativeHead: input {x:?} for {} channels",
            self.fc.geom.in_c
        );
        Ok(tvec!(f32::fact([1, self.fc.geom.out_c])))
    }
}

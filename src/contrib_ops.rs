//! onnxruntime's `com.microsoft` quantized operators that stock tract does not know:
//! `QLinearAdd`, `QLinearGlobalAveragePool` and `QGemm`. onnxruntime's quantizer writes them in
//! its QOperator layout (and so does ours, for the first two), so without them such a model does
//! not load at all.
//!
//! Each op is lowered, when tract types the model, to the standard ops it stands for:
//! dequantize the inputs (`(q - zero_point) * scale`), do the float operation, quantize the
//! result (`round_half_even(x / scale) + zero_point`, saturated). This is the arithmetic
//! onnxruntime's own reference kernels define; its vectorized kernels may differ by one step
//! where a value falls on a rounding tie. The native int8 path replaces these where it can.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::{add, mul, sub};
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;
use tract_onnx::tract_hir::ops::quant::{
    quantize_linear_i8, quantize_linear_u8, DequantizeLinearF32,
};

/// Registers the operators of this module (looked up by op type; tract ignores the domain).
pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("QLinearAdd", qlinear_add);
    reg.insert("QLinearGlobalAveragePool", qlinear_global_average_pool);
    reg.insert("QGemm", qgemm);
}

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Inputs that must be present (onnxruntime's quantizer always writes the zero points).
fn require_inputs(node: &NodeProto, positions: &[usize]) -> TractResult<()> {
    for &i in positions {
        if node.input.get(i).is_none_or(|s| s.is_empty()) {
            bail!(
                "{} `{}`: input {i} (a scale or zero point) is missing; only explicit zero points are supported",
                node.op_type,
                node.name
            );
        }
    }
    Ok(())
}

fn qlinear_add(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    require_inputs(node, &[0, 1, 2, 3, 4, 5, 6, 7])?;
    Ok((expand(QLinearAdd), vec![]))
}

fn qlinear_global_average_pool(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    require_inputs(node, &[0, 1, 2, 3, 4])?;
    let channels_last = node.get_attr_opt::<i64>("channels_last")?.unwrap_or(0) != 0;
    Ok((expand(QLinearGlobalAveragePool { channels_last }), vec![]))
}

fn qgemm(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    require_inputs(node, &[0, 1, 2, 3, 4, 5])?;
    let present = |i: usize| node.input.get(i).is_some_and(|s| !s.is_empty());
    let op = QGemm {
        trans_a: node.get_attr_opt::<i64>("transA")?.unwrap_or(0) != 0,
        trans_b: node.get_attr_opt::<i64>("transB")?.unwrap_or(0) != 0,
        alpha: node.get_attr_opt::<f32>("alpha")?.unwrap_or(1.0).to_bits(),
        has_bias: present(6),
        quantized_output: present(7),
    };
    ensure!(
        !op.quantized_output || present(8),
        "QGemm `{}`: y_scale without y_zero_point",
        node.name
    );
    Ok((expand(op), vec![]))
}

/// The constant value of an input, or an error naming what it is.
fn konst(target: &TypedModel, o: OutletId, what: &str) -> TractResult<Arc<Tensor>> {
    target
        .outlet_fact(o)?
        .konst
        .clone()
        .with_context(|| format!("{what} must be a constant"))
}

/// Shapes a per-axis parameter `[n]` so that it broadcasts along `axis` of a rank `rank`
/// tensor (a scalar stays a scalar).
fn along_axis(param: &Tensor, axis: usize, rank: usize) -> TractResult<Tensor> {
    let p = param.cast_to::<f32>()?.into_owned();
    if p.len() == 1 {
        return p.into_shape(&[]);
    }
    let mut shape = tvec![1; rank];
    shape[axis] = p.len();
    p.into_shape(&shape)
}

/// `(q - zero_point) * scale` in f32; per-tensor, or per `axis` when the scale or zero point
/// is a vector.
fn dequantize(
    target: &mut TypedModel,
    name: &str,
    inputs: [OutletId; 3],
    axis: usize,
) -> TractResult<OutletId> {
    let scale = konst(target, inputs[1], &format!("{name} scale"))?;
    let zp = konst(target, inputs[2], &format!("{name} zero point"))?;
    if scale.len() == 1 && zp.len() == 1 {
        let op =
            DequantizeLinearF32::new(scale.cast_to_scalar::<f32>()?, zp.cast_to_scalar::<i32>()?);
        return Ok(target.wire_node(name, op, &[inputs[0]])?[0]);
    }
    let rank = target.outlet_fact(inputs[0])?.rank();
    let scale = target.add_const(format!("{name}.scale"), along_axis(&scale, axis, rank)?)?;
    let zp = target.add_const(format!("{name}.zero_point"), along_axis(&zp, axis, rank)?)?;
    let x = target.wire_node(
        format!("{name}.cast"),
        cast(f32::datum_type()),
        &[inputs[0]],
    )?;
    let x = wire_with_rank_broadcast(format!("{name}.sub"), target, sub(), &[x[0], zp])?;
    Ok(wire_with_rank_broadcast(name, target, mul(), &[x[0], scale])?[0])
}

/// `saturate(round_half_even(x / scale) + zero_point)`, per tensor, into the zero point's type.
fn quantize(
    target: &mut TypedModel,
    name: &str,
    x: OutletId,
    scale: OutletId,
    zp: OutletId,
) -> TractResult<OutletId> {
    let scale = konst(target, scale, &format!("{name} output scale"))?;
    let zp = konst(target, zp, &format!("{name} output zero point"))?;
    ensure!(
        scale.len() == 1 && zp.len() == 1,
        "{name}: the output is quantized per tensor only"
    );
    let inv = scale.cast_to_scalar::<f32>()?.recip();
    let op: Box<dyn TypedOp> = match zp.datum_type() {
        DatumType::U8 => Box::new(quantize_linear_u8(inv, zp.cast_to_scalar::<u8>()?)),
        DatumType::I8 => Box::new(quantize_linear_i8(inv, zp.cast_to_scalar::<i8>()?)),
        dt => bail!("{name}: output zero point of type {dt:?} (expected u8 or i8)"),
    };
    Ok(target.wire_node(name, op, &[x])?[0])
}

fn binary(
    target: &mut TypedModel,
    name: String,
    op: TypedBinOp,
    a: OutletId,
    b: OutletId,
) -> TractResult<OutletId> {
    Ok(wire_with_rank_broadcast(name, target, op, &[a, b])?[0])
}

/// `C = quantize(dequantize(A) + dequantize(B))`, with numpy broadcasting.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct QLinearAdd;

impl Expansion for QLinearAdd {
    fn name(&self) -> StaticName {
        "QLinearAdd".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 8)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &inputs[2].datum_type)?;
        s.equals(&inputs[3].datum_type, &inputs[5].datum_type)?;
        s.equals(&outputs[0].datum_type, &inputs[7].datum_type)?;
        s.given_2(&inputs[0].shape, &inputs[3].shape, move |s, a, b| {
            let c = tract_onnx::tract_core::broadcast::multi_broadcast(&[a, b])
                .context("QLinearAdd: the shapes do not broadcast")?;
            s.equals(&outputs[0].shape, ShapeFactoid::from(c))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let a = dequantize(
            target,
            &format!("{prefix}.a"),
            [inputs[0], inputs[1], inputs[2]],
            1,
        )?;
        let b = dequantize(
            target,
            &format!("{prefix}.b"),
            [inputs[3], inputs[4], inputs[5]],
            1,
        )?;
        let sum = binary(target, format!("{prefix}.sum"), add(), a, b)?;
        Ok(tvec!(quantize(target, prefix, sum, inputs[6], inputs[7])?))
    }
}

/// Mean over the spatial axes of a quantized NCHW (or NHWC) tensor, requantized.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct QLinearGlobalAveragePool {
    channels_last: bool,
}

impl Expansion for QLinearGlobalAveragePool {
    fn name(&self) -> StaticName {
        "QLinearGlobalAveragePool".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 5)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[4].datum_type)?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        let channels_last = self.channels_last;
        s.given(&inputs[0].shape, move |s, shape| {
            let rank = shape.len();
            let channel = if channels_last { rank - 1 } else { 1 };
            for (axis, d) in shape.iter().enumerate() {
                let kept = axis == 0 || axis == channel;
                s.equals(
                    &outputs[0].shape[axis],
                    if kept { d.clone() } else { 1.to_dim() },
                )?;
            }
            Ok(())
        })
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = target.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        ensure!(
            rank >= 3,
            "{prefix}: input of rank {rank} (expected N, C and spatial axes)"
        );
        let axes: TVec<usize> = if self.channels_last {
            (1..rank - 1).collect()
        } else {
            (2..rank).collect()
        };
        let mut count = 1usize;
        for &a in &axes {
            count *= fact.shape[a]
                .to_usize()
                .with_context(|| format!("{prefix}: spatial size must be known"))?;
        }
        let channel = if self.channels_last { rank - 1 } else { 1 };
        let x = dequantize(
            target,
            &format!("{prefix}.x"),
            [inputs[0], inputs[1], inputs[2]],
            channel,
        )?;
        let sum = target.wire_node(
            format!("{prefix}.sum"),
            Reduce::new(axes, Reducer::Sum),
            &[x],
        )?[0];
        let inv = target.add_const(format!("{prefix}.inv_count"), tensor0(1.0 / count as f32))?;
        let mean = binary(target, format!("{prefix}.mean"), mul(), sum, inv)?;
        Ok(tvec!(quantize(target, prefix, mean, inputs[3], inputs[4])?))
    }
}

/// `Y = alpha * A' B' + C` over dequantized A and B (`'` = transposed if asked), C an int32 bias
/// at `a_scale * b_scale`; Y quantized when `y_scale` is given, float otherwise. B may be
/// quantized per output column.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct QGemm {
    trans_a: bool,
    trans_b: bool,
    /// `f32::to_bits` of alpha (so that the op can be hashed).
    alpha: u32,
    has_bias: bool,
    quantized_output: bool,
}

impl QGemm {
    /// tract drops empty (absent) inputs, so the later ones move down.
    fn input_count(&self) -> usize {
        6 + self.has_bias as usize + 2 * self.quantized_output as usize
    }

    fn y_scale_input(&self) -> usize {
        6 + self.has_bias as usize
    }
}

impl Expansion for QGemm {
    fn name(&self) -> StaticName {
        "QGemm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.input_count())?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[3].rank, 2)?;
        s.equals(&outputs[0].rank, 2)?;
        if self.quantized_output {
            s.equals(
                &outputs[0].datum_type,
                &inputs[self.y_scale_input() + 1].datum_type,
            )?;
        } else {
            s.equals(&outputs[0].datum_type, f32::datum_type())?;
        }
        let (ra, ca) = if self.trans_a { (1, 0) } else { (0, 1) };
        let (rb, cb) = if self.trans_b { (1, 0) } else { (0, 1) };
        s.equals(&inputs[0].shape[ra], &outputs[0].shape[0])?;
        s.equals(&inputs[0].shape[ca], &inputs[3].shape[rb])?;
        s.equals(&inputs[3].shape[cb], &outputs[0].shape[1])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let a = dequantize(
            target,
            &format!("{prefix}.a"),
            [inputs[0], inputs[1], inputs[2]],
            1,
        )?;
        // B's output columns are its rows when transposed.
        let b_axis = if self.trans_b { 0 } else { 1 };
        let b = dequantize(
            target,
            &format!("{prefix}.b"),
            [inputs[3], inputs[4], inputs[5]],
            b_axis,
        )?;
        let a_axes = if self.trans_a { "km" } else { "mk" };
        let b_axes = if self.trans_b { "nk" } else { "kn" };
        let expr = format!("{a_axes},{b_axes}->mn");
        let mut y = target.wire_node(
            format!("{prefix}.matmul"),
            EinSum::new(expr.parse()?, f32::datum_type()),
            &[a, b],
        )?[0];
        let alpha = f32::from_bits(self.alpha);
        if alpha != 1.0 {
            let k = target.add_const(format!("{prefix}.alpha"), tensor0(alpha))?;
            y = binary(target, format!("{prefix}.scaled"), mul(), y, k)?;
        }
        if self.has_bias {
            let c = konst(target, inputs[6], &format!("{prefix} bias"))?;
            let a_scale =
                konst(target, inputs[1], &format!("{prefix} a_scale"))?.cast_to_scalar::<f32>()?;
            let b_scale = konst(target, inputs[4], &format!("{prefix} b_scale"))?;
            let b_scale = b_scale.cast_to::<f32>()?;
            let b_scale = b_scale.try_as_plain_ram()?.as_slice::<f32>()?;
            let c = c.cast_to::<i32>()?;
            let c = c.try_as_plain_ram()?.as_slice::<i32>()?;
            let bias: Vec<f32> = c
                .iter()
                .enumerate()
                .map(|(j, &q)| {
                    let bs = if b_scale.len() == 1 {
                        b_scale[0]
                    } else {
                        b_scale[j]
                    };
                    q as f32 * a_scale * bs * alpha
                })
                .collect();
            let shape = if bias.len() == 1 {
                vec![]
            } else {
                vec![1, bias.len()]
            };
            let bias =
                target.add_const(format!("{prefix}.bias"), Tensor::from_shape(&shape, &bias)?)?;
            y = binary(target, format!("{prefix}.biased"), add(), y, bias)?;
        }
        if self.quantized_output {
            let ys = self.y_scale_input();
            y = quantize(target, prefix, y, inputs[ys], inputs[ys + 1])?;
        }
        Ok(tvec!(y))
    }
}

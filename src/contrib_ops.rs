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
pub(crate) fn konst(target: &TypedModel, o: OutletId, what: &str) -> TractResult<Arc<Tensor>> {
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

#[cfg(test)]
mod tests {
    //! Each op in a one-node model through the project's loader, against the ONNX definition
    //! computed here in f64.
    use super::*;
    use crate::onnx_build::{f32_tensor, raw_tensor};
    use tract_onnx::pb;
    use tract_onnx::pb::tensor_proto::DataType;

    fn bytes(name: &str, dt: DataType, dims: &[i64], v: &[u8]) -> pb::TensorProto {
        raw_tensor(name, dt, dims, v.to_vec())
    }

    /// Runs a single `op` node whose first input `x` is the graph input.
    fn run_one(
        op: &str,
        inputs: &[&str],
        inits: Vec<pb::TensorProto>,
        attrs: Vec<pb::AttributeProto>,
        x: Tensor,
    ) -> Tensor {
        let graph = pb::GraphProto {
            node: vec![pb::NodeProto {
                name: "op".into(),
                op_type: op.into(),
                domain: "com.microsoft".into(),
                input: inputs.iter().map(|s| s.to_string()).collect(),
                output: vec!["y".into()],
                attribute: attrs,
                ..Default::default()
            }],
            input: vec![pb::ValueInfoProto {
                name: "x".into(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type: match x.datum_type() {
                            DatumType::U8 => DataType::Uint8,
                            DatumType::I8 => DataType::Int8,
                            _ => DataType::Float,
                        } as i32,
                        shape: None,
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            initializer: inits,
            ..Default::default()
        };
        let proto = pb::ModelProto {
            ir_version: 7,
            opset_import: vec![
                pb::OperatorSetIdProto {
                    domain: String::new(),
                    version: 13,
                },
                pb::OperatorSetIdProto {
                    domain: "com.microsoft".into(),
                    version: 1,
                },
            ],
            graph: Some(graph),
            ..Default::default()
        };
        let model = crate::model::onnx_loader()
            .model_for_proto_model(&proto)
            .unwrap()
            .with_input_fact(0, TypedFact::shape_and_dt_of(&x).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let mut out = model.run(tvec!(x.into_tvalue())).unwrap();
        out.remove(0).into_tensor()
    }

    /// `saturate(round_half_even(v / scale) + zp)` in f64, or `None` on a near-tie (where f32
    /// and f64 may round apart).
    fn requantize(v: f64, scale: f64, zp: i32, lo: i32, hi: i32) -> Option<i32> {
        let x = v / scale;
        if (x - x.floor() - 0.5).abs() < 1e-3 {
            return None;
        }
        Some((x.round_ties_even() as i32 + zp).clamp(lo, hi))
    }

    /// A deterministic spread of bytes.
    fn pattern(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    #[test]
    fn qlinear_add_u8_with_broadcast() {
        let (sa, za, sb, zb, sc, zc) = (0.05f32, 128u8, 0.02f32, 3u8, 0.07f32, 10u8);
        let a = pattern(2 * 3 * 4, 1);
        let b = pattern(3 * 4, 7); // [3, 4] broadcast over the leading axis
        let x = Tensor::from_shape(&[2, 3, 4], &a).unwrap();
        let y = run_one(
            "QLinearAdd",
            &["x", "sa", "za", "b", "sb", "zb", "sc", "zc"],
            vec![
                f32_tensor("sa", &[], &[sa]),
                bytes("za", DataType::Uint8, &[], &[za]),
                bytes("b", DataType::Uint8, &[3, 4], &b),
                f32_tensor("sb", &[], &[sb]),
                bytes("zb", DataType::Uint8, &[], &[zb]),
                f32_tensor("sc", &[], &[sc]),
                bytes("zc", DataType::Uint8, &[], &[zc]),
            ],
            vec![],
            x,
        );
        assert_eq!(y.shape(), &[2, 3, 4]);
        let y = y.try_as_plain_ram().unwrap().as_slice::<u8>().unwrap();
        let mut checked = 0;
        for (i, &got) in y.iter().enumerate() {
            let v =
                (a[i] as f64 - za as f64) * sa as f64 + (b[i % 12] as f64 - zb as f64) * sb as f64;
            if let Some(want) = requantize(v, sc as f64, zc as i32, 0, 255) {
                assert_eq!(got as i32, want, "element {i}");
                checked += 1;
            }
        }
        assert!(checked > 20);
    }

    #[test]
    fn qlinear_global_average_pool_s8() {
        let (sx, zx, sy, zy) = (0.1f32, -5i8, 0.03f32, 7i8);
        let raw = pattern(2 * 3 * 5 * 5, 3);
        let x = Tensor::from_shape(&[2, 3, 5, 5], &raw).unwrap();
        let x = x.cast_to::<i8>().unwrap().into_owned();
        let xs: Vec<i8> = x
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<i8>()
            .unwrap()
            .to_vec();
        let y = run_one(
            "QLinearGlobalAveragePool",
            &["x", "sx", "zx", "sy", "zy"],
            vec![
                f32_tensor("sx", &[], &[sx]),
                bytes("zx", DataType::Int8, &[], &[zx as u8]),
                f32_tensor("sy", &[], &[sy]),
                bytes("zy", DataType::Int8, &[], &[zy as u8]),
            ],
            vec![],
            x,
        );
        assert_eq!(y.shape(), &[2, 3, 1, 1]);
        let y = y.try_as_plain_ram().unwrap().as_slice::<i8>().unwrap();
        for (c, &got) in y.iter().enumerate() {
            let mean = xs[c * 25..(c + 1) * 25]
                .iter()
                .map(|&q| (q as f64 - zx as f64) * sx as f64)
                .sum::<f64>()
                / 25.0;
            if let Some(want) = requantize(mean, sy as f64, zy as i32, -128, 127) {
                assert_eq!(got as i32, want, "channel {c}");
            }
        }
    }

    #[test]
    fn qgemm_per_column_weights_float_and_quantized_output() {
        let (m, k, n) = (2usize, 5usize, 3usize);
        let (sa, za) = (0.04f32, 100u8);
        let b_scales = [0.01f32, 0.02, 0.005];
        let a = pattern(m * k, 11);
        let b: Vec<u8> = pattern(n * k, 5); // B^T as [n, k], read as i8
        let c = [1000i32, -250, 40];
        let attr = |name: &str, i: i64| pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i,
            ..Default::default()
        };
        let inits = |quantized: bool| {
            let mut v = vec![
                f32_tensor("sa", &[], &[sa]),
                bytes("za", DataType::Uint8, &[], &[za]),
                bytes("b", DataType::Int8, &[n as i64, k as i64], &b),
                f32_tensor("sb", &[n as i64], &b_scales),
                bytes("zb", DataType::Int8, &[n as i64], &[0; 3]),
                raw_tensor(
                    "c",
                    DataType::Int32,
                    [n as i64],
                    c.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
            ];
            if quantized {
                v.push(f32_tensor("sy", &[], &[0.05]));
                v.push(bytes("zy", DataType::Int8, &[], &[0]));
            }
            v
        };
        let want = |i: usize, j: usize| -> f64 {
            let dot: f64 = (0..k)
                .map(|l| (a[i * k + l] as f64 - za as f64) * (b[j * k + l] as i8) as f64)
                .sum();
            (dot + c[j] as f64) * sa as f64 * b_scales[j] as f64
        };
        let x = || Tensor::from_shape(&[m, k], &a).unwrap();
        let float = run_one(
            "QGemm",
            &["x", "sa", "za", "b", "sb", "zb", "c"],
            inits(false),
            vec![attr("transB", 1)],
            x(),
        );
        assert_eq!(float.shape(), &[m, n]);
        for (ix, &got) in float
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .enumerate()
        {
            let w = want(ix / n, ix % n);
            assert!(
                (got as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{ix}: {got} vs {w}"
            );
        }
        let quantized = run_one(
            "QGemm",
            &["x", "sa", "za", "b", "sb", "zb", "c", "sy", "zy"],
            inits(true),
            vec![attr("transB", 1)],
            x(),
        );
        for (ix, &got) in quantized
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<i8>()
            .unwrap()
            .iter()
            .enumerate()
        {
            if let Some(w) = requantize(want(ix / n, ix % n), 0.05, 0, -128, 127) {
                assert_eq!(got as i32, w, "{ix}");
            }
        }
    }
}

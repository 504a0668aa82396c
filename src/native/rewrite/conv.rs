//! The convolution patterns (QDQ with its requantizing tail and residual add, QOperator's
//! `QLinearConv`) and the stem's max pool, each replaced by one native node.

use super::graph::*;
use crate::native::ops::{CONV_OP, DOMAIN, MAX_POOL_OP};
use crate::onnx_build::{new_float_attr, new_int_attr, raw_tensor, read_int_attr};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// What a native conv needs, gathered from either layout.
pub(super) struct ConvParts {
    pub(super) name: String,
    pub(super) x: String,
    pub(super) x_scale: f64,
    pub(super) x_zero: i32,
    /// The int8 weight initializer (ONNX order, zero points 0), read when it is packed.
    pub(super) w: String,
    pub(super) w_dims: Vec<i64>,
    pub(super) w_scales: Vec<f64>,
    /// Float bias (dequantized), per output channel.
    pub(super) bias: Vec<f64>,
    pub(super) window: (usize, usize, usize),
    pub(super) groups: usize,
    pub(super) y_scale: f64,
    pub(super) y_zero: i32,
    pub(super) relu: bool,
    /// `(quantized identity, scale, zero point)`.
    pub(super) residual: Option<(String, f64, i32)>,
    pub(super) output: String,
}

/// An int8 weight initializer with zero zero points: `(name, dims, scales per output channel)`.
/// Its values are left where they are: the park step packs them once the rewrite is final.
pub(super) fn int8_weights(
    g: &pb::GraphProto,
    ix: &Index,
    w: &str,
    scale: &str,
    zero: &str,
) -> Option<(String, Vec<i64>, Vec<f64>)> {
    let dims = ix.dims(w)?.to_vec();
    if ix.dtype(w)? != DataType::Int8 || dims.len() != 4 || dims.iter().any(|&d| d <= 0) {
        return None;
    }
    holds_int8(
        &g.initializer[*ix.inits.get(w)?],
        dims.iter().product::<i64>() as usize,
    )
    .then_some(())?;
    if ix.init_values_in(g, zero)?.iter().any(|&z| z != 0.0) {
        return None;
    }
    let out = dims[0] as usize;
    let mut scales = ix.init_values_in(g, scale)?;
    if scales.len() == 1 {
        scales = vec![scales[0]; out];
    }
    (scales.len() == out).then_some(())?;
    Some((w.to_string(), dims, scales))
}

/// The `n` values of an int8 initializer, as stored (`raw_data`, or one per `int32_data`).
pub(super) fn int8_values(t: &pb::TensorProto, n: usize) -> Option<Vec<i8>> {
    if t.raw_data.len() == n {
        Some(t.raw_data.iter().map(|&b| b as i8).collect())
    } else if t.raw_data.is_empty() && t.int32_data.len() == n {
        Some(t.int32_data.iter().map(|&v| v as i8).collect())
    } else {
        None
    }
}

/// Whether an int8 initializer holds `n` values.
fn holds_int8(t: &pb::TensorProto, n: usize) -> bool {
    t.raw_data.len() == n || (t.raw_data.is_empty() && t.int32_data.len() == n)
}

/// The float bias `b` names (absent: zeros; a float initializer; or `DequantizeLinear` of an
/// integer initializer with zero point 0), if it has `out` values.
pub(super) fn float_bias(
    g: &pb::GraphProto,
    ix: &Index,
    b: Option<&String>,
    out: usize,
) -> Option<Vec<f64>> {
    let bias = match b.filter(|b| !b.is_empty()) {
        None => vec![0.0; out],
        Some(b) if ix.inits.contains_key(b) => ix.init_values_in(g, b)?,
        Some(b) => {
            let bdq = &g.node[*ix.producer.get(b)?];
            if bdq.op_type != "DequantizeLinear" {
                return None;
            }
            let q = ix.init_values_in(g, bdq.input.first()?)?;
            let mut s = ix.init_values_in(g, bdq.input.get(1)?)?;
            if s.len() == 1 {
                s = vec![s[0]; q.len()];
            }
            if bdq.input.len() == 3
                && ix
                    .init_values_in(g, bdq.input.get(2)?)?
                    .iter()
                    .any(|&z| z != 0.0)
            {
                return None;
            }
            q.iter().zip(&s).map(|(q, s)| q * s).collect()
        }
    };
    (bias.len() == out).then_some(bias)
}

/// A QDQ conv starting at node `ci`, with its requantizing tail.
pub(super) fn qdq_conv(g: &pb::GraphProto, ix: &Index, ci: usize) -> Option<(usize, ConvParts)> {
    let c = &g.node[ci];
    if c.op_type != "Conv" || c.input.len() < 2 {
        return None;
    }
    let (xq, xs, xz) = ix.dequantized_u8(g, c.input.first()?)?;
    let wdq = &g.node[*ix.producer.get(c.input.get(1)?)?];
    if wdq.op_type != "DequantizeLinear" || wdq.input.len() != 3 {
        return None;
    }
    if ix.init_values_in(g, wdq.input.get(1)?)?.len() > 1
        && read_int_attr(wdq, "axis").unwrap_or(1) != 0
    {
        return None;
    }
    let (w, w_dims, w_scales) = int8_weights(
        g,
        ix,
        wdq.input.first()?,
        wdq.input.get(1)?,
        wdq.input.get(2)?,
    )?;
    let out = w_dims[0] as usize;
    let bias = float_bias(g, ix, c.input.get(2), out)?;
    // The tail: [Relu] -> Q, or Add(DQ(identity)) -> [Relu] -> Q.
    let (mut ni, mut n) = ix.sole_consumer(g, c.output.first()?)?;
    let mut residual = None;
    if n.op_type == "Add" && n.input.len() == 2 {
        let other = if n.input.first()? == c.output.first()? {
            n.input.get(1)?
        } else {
            n.input.first()?
        };
        let (iq, is, iz) = ix.dequantized_u8(g, other)?;
        residual = Some((iq.to_string(), is, iz));
        (ni, n) = ix.sole_consumer(g, n.output.first()?)?;
    }
    let relu = n.op_type == "Relu";
    if relu {
        (ni, n) = ix.sole_consumer(g, n.output.first()?)?;
    }
    let (ys, yz) = ix.quantize_u8(g, n)?;
    let parts = ConvParts {
        name: c.name.clone(),
        x: xq.to_string(),
        x_scale: xs,
        x_zero: xz,
        w,
        w_dims,
        w_scales,
        bias,
        window: window(c)?,
        groups: read_int_attr(c, "group").unwrap_or(1) as usize,
        y_scale: ys,
        y_zero: yz,
        relu,
        residual,
        output: n.output.first()?.clone(),
    };
    Some((ni, parts))
}

/// A `QLinearConv` with u8 activations.
pub(super) fn qlinear_conv(
    g: &pb::GraphProto,
    ix: &Index,
    ci: usize,
) -> Option<(usize, ConvParts)> {
    let c = &g.node[ci];
    if c.op_type != "QLinearConv"
        || c.input.len() < 8
        || ix.dtype(c.input.get(2)?) != Some(DataType::Uint8)
    {
        return None;
    }
    let (w, w_dims, w_scales) =
        int8_weights(g, ix, c.input.get(3)?, c.input.get(4)?, c.input.get(5)?)?;
    let xs = ix.scalar(g, c.input.get(1)?)?;
    let out = w_dims[0] as usize;
    let bias = match c.input.get(8).filter(|b| !b.is_empty()) {
        None => vec![0.0; out],
        Some(b) => ix
            .init_values_in(g, b)?
            .iter()
            .zip(&w_scales)
            .map(|(q, ws)| q * xs * ws)
            .collect(),
    };
    (bias.len() == out).then_some(())?;
    let parts = ConvParts {
        name: c.name.clone(),
        x: c.input.first()?.clone(),
        x_scale: xs,
        x_zero: ix.scalar(g, c.input.get(2)?)? as i32,
        w,
        w_dims,
        w_scales,
        bias,
        window: window(c)?,
        groups: read_int_attr(c, "group").unwrap_or(1) as usize,
        y_scale: ix.scalar(g, c.input.get(6)?)?,
        y_zero: ix.scalar(g, c.input.get(7)?)? as i32,
        relu: false,
        residual: None,
        output: c.output.first()?.clone(),
    };
    Some((ci, parts))
}

/// Whether the native op accepts the convolution (it refuses, at load, what could overflow its
/// accumulators: see `ops/conv.rs`); what it would refuse stays with tract.
pub(super) fn fits_native(p: &ConvParts) -> bool {
    let (k, s, pad) = p.window;
    let depth = p.w_dims.get(1).map_or(0, |&c| c.max(0) as usize) * k * k;
    let window_ok = [k, s, pad]
        .iter()
        .all(|&v| v <= crate::kernels::conv::MAX_WINDOW);
    let bias_ok = p
        .bias
        .iter()
        .zip(&p.w_scales)
        .all(|(b, ws)| (b / (p.x_scale * ws)).abs() <= (1u32 << 30) as f64);
    window_ok && bias_ok && depth <= 1 << 14
}

/// The native conv node and its initializers.
pub(super) fn native_conv(p: &ConvParts) -> (pb::NodeProto, Vec<pb::TensorProto>) {
    let (k, s, pad) = p.window;
    let out = p.w_dims[0] as usize;
    let prefix = format!("{}.native", p.name);
    let acc_scales: Vec<f64> = p.w_scales.iter().map(|ws| p.x_scale * ws).collect();
    let bias: Vec<i32> = p
        .bias
        .iter()
        .zip(&acc_scales)
        .map(|(b, s)| {
            (b / s)
                .round_ties_even()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    let mult: Vec<f32> = acc_scales.iter().map(|s| (s / p.y_scale) as f32).collect();
    let inits = vec![
        raw_tensor(
            format!("{prefix}.bias"),
            DataType::Int32,
            vec![out as i64],
            bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        raw_tensor(
            format!("{prefix}.multiplier"),
            DataType::Float,
            vec![out as i64],
            mult.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ];
    // The weights stay in their own initializer, named as the second input until the park
    // step packs them and replaces the input with a key.
    let mut input = vec![
        p.x.clone(),
        p.w.clone(),
        inits[0].name.clone(),
        inits[1].name.clone(),
    ];
    let mut attribute = vec![
        new_int_attr("kernel", k as i64),
        new_int_attr("stride", s as i64),
        new_int_attr("pad", pad as i64),
        new_int_attr("group", p.groups as i64),
        new_int_attr("in_zero", p.x_zero as i64),
        new_int_attr("out_zero", p.y_zero as i64),
        new_int_attr("lo", if p.relu { p.y_zero as i64 } else { 0 }),
        new_int_attr("hi", 255),
    ];
    if let Some((r, rs, rz)) = &p.residual {
        input.push(r.clone());
        attribute.push(new_int_attr("residual_zero", *rz as i64));
        attribute.push(new_float_attr(
            "residual_multiplier",
            (rs / p.y_scale) as f32,
        ));
    }
    let node = native_node(prefix, CONV_OP, input, vec![p.output.clone()], attribute);
    (node, inits)
}

pub(super) fn native_max_pool(
    name: &str,
    x: &str,
    out: &str,
    (k, s, p): (usize, usize, usize),
) -> pb::NodeProto {
    native_node(
        format!("{name}.native"),
        MAX_POOL_OP,
        vec![x.into()],
        vec![out.into()],
        vec![
            new_int_attr("kernel", k as i64),
            new_int_attr("stride", s as i64),
            new_int_attr("pad", p as i64),
        ],
    )
}

/// Replaces every recognized pattern's last node by a native node; returns how many.
pub(super) fn replace_patterns(g: &mut pb::GraphProto) -> usize {
    let mut count = 0;
    let mut i = 0;
    let ix = Index::new(g);
    while i < g.node.len() {
        let conv = qdq_conv(g, &ix, i)
            .or_else(|| qlinear_conv(g, &ix, i))
            .filter(|(_, p)| fits_native(p));
        if let Some((last, parts)) = conv {
            let (node, inits) = native_conv(&parts);
            g.node[last] = node;
            // Appended after the indexed ones: no pattern reads the native nodes' initializers.
            g.initializer.extend(inits);
            count += 1;
        } else if let Some((at, node)) = native_max_pool_for(g, &ix, i) {
            g.node[at] = node;
            count += 1;
        }
        i += 1;
    }
    count
}

/// The native max pool replacing node `i`, and where it goes: a `MaxPool` on what a native op
/// produced, or DQ -> MaxPool -> Q on one grid (then it replaces the Q).
pub(super) fn native_max_pool_for(
    g: &pb::GraphProto,
    ix: &Index,
    i: usize,
) -> Option<(usize, pb::NodeProto)> {
    let n = &g.node[i];
    if n.op_type != "MaxPool" || n.output.len() != 1 {
        return None;
    }
    let win = window(n)?;
    let (input, output) = (n.input.first()?, n.output.first()?);
    let from_native = ix
        .producer
        .get(input)
        .is_some_and(|&p| g.node[p].domain == DOMAIN);
    if from_native {
        return Some((i, native_max_pool(&n.name, input, output, win)));
    }
    let (a, s, z) = ix.dequantized_u8(g, input)?;
    let (qi, q) = ix.sole_consumer(g, output)?;
    (ix.quantize_u8(g, q) == Some((s, z))).then_some(())?;
    Some((qi, native_max_pool(&n.name, a, q.output.first()?, win)))
}

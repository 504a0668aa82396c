//! The ONNX-level rewrite that puts the native ops into a model.
//!
//! It runs on the protobuf graph, before tract parses it, because that is where an int8 model's
//! integers still are: int8 weights, int32 biases, scales and zero points as initializers (tract
//! folds QDQ weights to float as soon as it types the graph). Recognized, for u8 activations:
//! * QOperator: `QLinearConv` (onnxruntime's and ours);
//! * QDQ: `DequantizeLinear -> Conv (DQ weights, DQ or float bias) -> [Relu] -> QuantizeLinear`,
//!   and `... Conv -> Add(DequantizeLinear(identity)) -> [Relu] -> QuantizeLinear` (the residual
//!   block end as our quantizer writes it), fused into one native conv;
//! * the stem's max pool on a quantized tensor (`MaxPool` on u8, or `DQ -> MaxPool -> Q` with
//!   one grid).
//!
//! Then every tensor a native op produces is NHWC; elementwise consumers (Q/DQ with scalar
//! parameters, `Relu`, `Add`, `QLinearAdd`) keep it so, and a `Transpose` is inserted only before
//! an op that needs NCHW. Nodes left without consumers are dropped.

use super::ops::{CONV_OP, DOMAIN, HEAD_OP, MAX_POOL_OP, QUANTIZE_OP};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

/// The rewritten model and how many native ops it has.
pub struct Rewritten {
    pub model: pb::ModelProto,
    pub native_ops: usize,
}

/// Replaces what the native path runs; any model comes out valid (unchanged if nothing matched).
/// Works in place: the weights of a large model are not copied (they dominate its memory).
pub fn rewrite(mut model: pb::ModelProto) -> Rewritten {
    let Some(mut g) = model.graph.take() else {
        return Rewritten {
            model,
            native_ops: 0,
        };
    };
    // What the layout pass may have to undo: everything but the initializers, which the
    // patterns only append to.
    let initializers = std::mem::take(&mut g.initializer);
    let original = g.clone();
    g.initializer = initializers;
    let count = g.initializer.len();
    let mut native_ops = replace_patterns(&mut g);
    if native_ops > 0 {
        native_ops += native_head(&mut g);
        native_ops += native_input_quantize(&mut g);
    }
    if native_ops > 0 && !assign_layouts(&mut g) {
        log::warn!("native rewrite skipped: a graph output would be NHWC");
        let mut initializers = std::mem::take(&mut g.initializer);
        initializers.truncate(count);
        model.graph = Some(pb::GraphProto {
            initializer: initializers,
            ..original
        });
        return Rewritten {
            model,
            native_ops: 0,
        };
    }
    if native_ops == 0 {
        model.graph = Some(g);
        return Rewritten {
            model,
            native_ops: 0,
        };
    }
    remove_dead(&mut g);
    if fold_weight_dequantize(&mut g) > 0 {
        remove_dead(&mut g);
    }
    if !model.opset_import.iter().any(|o| o.domain == DOMAIN) {
        model.opset_import.push(pb::OperatorSetIdProto {
            domain: DOMAIN.into(),
            version: 1,
        });
    }
    model.graph = Some(g);
    Rewritten { model, native_ops }
}

/// Numeric content of an initializer, as f64 (float, u8, i8, i32, i64).
fn values(t: &pb::TensorProto) -> Option<Vec<f64>> {
    let dt = DataType::try_from(t.data_type).ok()?;
    let raw = &t.raw_data;
    let from_raw = !raw.is_empty();
    Some(match dt {
        DataType::Float if from_raw => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        DataType::Float => t.float_data.iter().map(|&v| v as f64).collect(),
        DataType::Uint8 if from_raw => raw.iter().map(|&v| v as f64).collect(),
        DataType::Int8 if from_raw => raw.iter().map(|&v| v as i8 as f64).collect(),
        DataType::Uint8 | DataType::Int8 | DataType::Int32 if !from_raw => {
            t.int32_data.iter().map(|&v| v as f64).collect()
        }
        DataType::Int32 => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        DataType::Int64 if from_raw => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        DataType::Int64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        _ => return None,
    })
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn attr_ints(n: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn attr_int(n: &pb::NodeProto, name: &str) -> Option<i64> {
    attr(n, name).map(|a| a.i)
}

fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

fn float_attr(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn raw_init(name: String, dt: DataType, dims: Vec<i64>, raw_data: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name,
        dims,
        data_type: dt as i32,
        raw_data,
        ..Default::default()
    }
}

/// A node of the native ops' domain.
fn native_node(
    name: String,
    op_type: &str,
    input: Vec<String>,
    output: Vec<String>,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        name,
        op_type: op_type.into(),
        domain: DOMAIN.into(),
        input,
        output,
        attribute,
        ..Default::default()
    }
}

/// Square kernel, equal strides, equal pads, no dilation: `(kernel, stride, pad)`.
fn window(n: &pb::NodeProto) -> Option<(usize, usize, usize)> {
    let ks = attr_ints(n, "kernel_shape")?;
    let st = attr_ints(n, "strides").unwrap_or(vec![1, 1]);
    let pads = attr_ints(n, "pads").unwrap_or(vec![0; 4]);
    let dil = attr_ints(n, "dilations").unwrap_or(vec![1, 1]);
    let auto_pad_ok = attr(n, "auto_pad").is_none_or(|a| a.s.is_empty() || a.s == b"NOTSET");
    let ok = ks.len() == 2
        && ks[0] == ks[1]
        && st.len() == 2
        && st[0] == st[1]
        && pads.len() == 4
        && pads.iter().all(|&p| p == pads[0])
        && dil.iter().all(|&d| d == 1)
        && auto_pad_ok
        && attr_int(n, "ceil_mode").unwrap_or(0) == 0;
    ok.then_some((ks[0] as usize, st[0] as usize, pads[0] as usize))
}

/// The graph's lookups: built once; a replacement keeps the replaced node's place and outputs.
struct Index {
    /// Initializer name -> position in the graph's initializers.
    inits: HashMap<String, usize>,
    /// Per initializer: dims, data type, and the values of the small ones, decoded once.
    init_protos: Vec<(Vec<i64>, i32, Option<Vec<f64>>)>,
    producer: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
    outputs: HashSet<String>,
}

impl Index {
    fn new(g: &pb::GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.clone(), i);
            }
            for t in &n.input {
                consumers.entry(t.clone()).or_default().push(i);
            }
        }
        Index {
            inits: g
                .initializer
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            init_protos: g
                .initializer
                .iter()
                .map(|t| {
                    // Large tensors (weights) decode when a pattern asks; scalars now.
                    let small = t.dims.iter().product::<i64>() <= 4096;
                    (
                        t.dims.clone(),
                        t.data_type,
                        if small { values(t) } else { None },
                    )
                })
                .collect(),
            producer,
            consumers,
            outputs: g.output.iter().map(|o| o.name.clone()).collect(),
        }
    }

    fn init_values_in(&self, g: &pb::GraphProto, name: &str) -> Option<Vec<f64>> {
        let &i = self.inits.get(name)?;
        match &self.init_protos[i].2 {
            Some(v) => Some(v.clone()),
            None => values(&g.initializer[i]),
        }
    }

    fn dims(&self, name: &str) -> Option<&[i64]> {
        self.inits
            .get(name)
            .map(|&i| self.init_protos[i].0.as_slice())
    }

    fn dtype(&self, name: &str) -> Option<DataType> {
        self.inits
            .get(name)
            .and_then(|&i| DataType::try_from(self.init_protos[i].1).ok())
    }

    /// A scalar (or one-element) initializer.
    fn scalar(&self, g: &pb::GraphProto, name: &str) -> Option<f64> {
        self.init_values_in(g, name)
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
    }

    /// The only consumer of `t`, if it has exactly one and is not a graph output.
    fn sole_consumer<'g>(
        &self,
        g: &'g pb::GraphProto,
        t: &str,
    ) -> Option<(usize, &'g pb::NodeProto)> {
        if self.outputs.contains(t) {
            return None;
        }
        match self.consumers.get(t).map(|v| v.as_slice()) {
            Some([i]) => Some((*i, &g.node[*i])),
            _ => None,
        }
    }

    /// `(quantized input, scale, zero point)` of a per-tensor u8 `DequantizeLinear` producing `t`.
    fn dequantized_u8<'g>(&self, g: &'g pb::GraphProto, t: &str) -> Option<(&'g str, f64, i32)> {
        let n = &g.node[*self.producer.get(t)?];
        if n.op_type != "DequantizeLinear"
            || n.input.len() != 3
            || self.inits.contains_key(n.input.first()?)
        {
            return None;
        }
        let (s, z) = (
            self.scalar(g, n.input.get(1)?)?,
            self.scalar(g, n.input.get(2)?)?,
        );
        (self.dtype(n.input.get(2)?) == Some(DataType::Uint8)).then_some((
            n.input.first()?.as_str(),
            s,
            z as i32,
        ))
    }

    /// `(scale, zero point)` of a per-tensor u8 `QuantizeLinear`.
    fn quantize_u8(&self, g: &pb::GraphProto, n: &pb::NodeProto) -> Option<(f64, i32)> {
        if n.op_type != "QuantizeLinear"
            || n.input.len() != 3
            || self.dtype(n.input.get(2)?) != Some(DataType::Uint8)
        {
            return None;
        }
        Some((
            self.scalar(g, n.input.get(1)?)?,
            self.scalar(g, n.input.get(2)?)? as i32,
        ))
    }
}

/// What a native conv needs, gathered from either layout.
struct ConvParts {
    name: String,
    x: String,
    x_scale: f64,
    x_zero: i32,
    /// int8 weights as stored, with their dims.
    w: Vec<i8>,
    w_dims: Vec<i64>,
    w_scales: Vec<f64>,
    /// Float bias (dequantized), per output channel.
    bias: Vec<f64>,
    window: (usize, usize, usize),
    groups: usize,
    y_scale: f64,
    y_zero: i32,
    relu: bool,
    /// `(quantized identity, scale, zero point)`.
    residual: Option<(String, f64, i32)>,
    output: String,
}

/// int8 weights with zero zero points: `(values, dims, scales per output channel)`.
fn int8_weights(
    g: &pb::GraphProto,
    ix: &Index,
    w: &str,
    scale: &str,
    zero: &str,
) -> Option<(Vec<i8>, Vec<i64>, Vec<f64>)> {
    let dims = ix.dims(w)?.to_vec();
    if ix.dtype(w)? != DataType::Int8 || dims.len() != 4 {
        return None;
    }
    if ix.init_values_in(g, zero)?.iter().any(|&z| z != 0.0) {
        return None;
    }
    let out = dims[0] as usize;
    let mut scales = ix.init_values_in(g, scale)?;
    if scales.len() == 1 {
        scales = vec![scales[0]; out];
    }
    (scales.len() == out).then_some(())?;
    let w = ix
        .init_values_in(g, w)?
        .into_iter()
        .map(|v| v as i8)
        .collect();
    Some((w, dims, scales))
}

/// The float bias `b` names (absent: zeros; a float initializer; or `DequantizeLinear` of an
/// integer initializer with zero point 0), if it has `out` values.
fn float_bias(g: &pb::GraphProto, ix: &Index, b: Option<&String>, out: usize) -> Option<Vec<f64>> {
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
fn qdq_conv(g: &pb::GraphProto, ix: &Index, ci: usize) -> Option<(usize, ConvParts)> {
    let c = &g.node[ci];
    if c.op_type != "Conv" || c.input.len() < 2 {
        return None;
    }
    let (xq, xs, xz) = ix.dequantized_u8(g, c.input.first()?)?;
    let wdq = &g.node[*ix.producer.get(c.input.get(1)?)?];
    if wdq.op_type != "DequantizeLinear" || wdq.input.len() != 3 {
        return None;
    }
    if ix.init_values_in(g, wdq.input.get(1)?)?.len() > 1 && attr_int(wdq, "axis").unwrap_or(1) != 0
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
        groups: attr_int(c, "group").unwrap_or(1) as usize,
        y_scale: ys,
        y_zero: yz,
        relu,
        residual,
        output: n.output.first()?.clone(),
    };
    Some((ni, parts))
}

/// A `QLinearConv` with u8 activations.
fn qlinear_conv(g: &pb::GraphProto, ix: &Index, ci: usize) -> Option<(usize, ConvParts)> {
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
        groups: attr_int(c, "group").unwrap_or(1) as usize,
        y_scale: ix.scalar(g, c.input.get(6)?)?,
        y_zero: ix.scalar(g, c.input.get(7)?)? as i32,
        relu: false,
        residual: None,
        output: c.output.first()?.clone(),
    };
    Some((ci, parts))
}

/// Whether the native op accepts the convolution (it refuses, at load, what could overflow its
/// accumulators: see `ops.rs`); what it would refuse stays with tract.
fn fits_native(p: &ConvParts) -> bool {
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
fn native_conv(p: &ConvParts) -> (pb::NodeProto, Vec<pb::TensorProto>) {
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
        raw_init(
            format!("{prefix}.w"),
            DataType::Int8,
            p.w_dims.clone(),
            p.w.iter().map(|&v| v as u8).collect(),
        ),
        raw_init(
            format!("{prefix}.bias"),
            DataType::Int32,
            vec![out as i64],
            bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        raw_init(
            format!("{prefix}.multiplier"),
            DataType::Float,
            vec![out as i64],
            mult.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ];
    let mut input = vec![
        p.x.clone(),
        inits[0].name.clone(),
        inits[1].name.clone(),
        inits[2].name.clone(),
    ];
    let mut attribute = vec![
        int_attr("kernel", k as i64),
        int_attr("stride", s as i64),
        int_attr("pad", pad as i64),
        int_attr("group", p.groups as i64),
        int_attr("in_zero", p.x_zero as i64),
        int_attr("out_zero", p.y_zero as i64),
        int_attr("lo", if p.relu { p.y_zero as i64 } else { 0 }),
        int_attr("hi", 255),
    ];
    if let Some((r, rs, rz)) = &p.residual {
        input.push(r.clone());
        attribute.push(int_attr("residual_zero", *rz as i64));
        attribute.push(float_attr("residual_multiplier", (rs / p.y_scale) as f32));
    }
    let node = native_node(prefix, CONV_OP, input, vec![p.output.clone()], attribute);
    (node, inits)
}

fn native_max_pool(
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
            int_attr("kernel", k as i64),
            int_attr("stride", s as i64),
            int_attr("pad", p as i64),
        ],
    )
}

/// Replaces every recognized pattern's last node by a native node; returns how many.
fn replace_patterns(g: &mut pb::GraphProto) -> usize {
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
fn native_max_pool_for(g: &pb::GraphProto, ix: &Index, i: usize) -> Option<(usize, pb::NodeProto)> {
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

/// Replaces the `QuantizeLinear` (per-tensor, u8) of a graph input whose every consumer is a
/// native op by the native quantization, which writes NHWC directly (instead of a quantization
/// and a transpose). Returns how many (0 or 1 for a classifier).
fn native_input_quantize(g: &mut pb::GraphProto) -> usize {
    let ix = Index::new(g);
    let inputs: HashSet<&str> = g
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|i| !ix.inits.contains_key(*i))
        .collect();
    let live = live_nodes(g);
    let mut found = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        let (Some(x), Some(y)) = (n.input.first(), n.output.first()) else {
            continue;
        };
        if !inputs.contains(x.as_str()) || n.output.len() != 1 || ix.outputs.contains(y) {
            continue;
        }
        let Some((scale, zero)) = ix.quantize_u8(g, n) else {
            continue;
        };
        // What the native op accepts (else tract runs the node as it is).
        if !(scale > 0.0 && (scale as f32).is_finite() && (0..=255).contains(&zero)) {
            continue;
        }
        // Consumers that are still read (the patterns leave the nodes they bypassed behind,
        // for `remove_dead`).
        let consumers: Vec<usize> = ix
            .consumers
            .get(y)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&c| live[c])
            .collect();
        if consumers.is_empty() || !consumers.iter().all(|&c| g.node[c].domain == DOMAIN) {
            continue;
        }
        found.push((
            i,
            native_node(
                format!("{}.native", n.name),
                QUANTIZE_OP,
                vec![x.clone()],
                vec![y.clone()],
                vec![
                    float_attr("scale", scale as f32),
                    int_attr("zero", zero as i64),
                ],
            ),
        ));
    }
    let count = found.len();
    for (i, node) in found {
        g.node[i] = node;
    }
    count
}

/// Replaces a classifier head on a native op's output, `DQ -> GlobalAveragePool -> Q -> DQ ->
/// Flatten -> Gemm(DQ(int8 weights), bias)` (the QDQ form), by the native head: average pool and
/// fully connected layer on int8 values, float logits. Returns how many (0 or 1).
fn native_head(g: &mut pb::GraphProto) -> usize {
    let ix = Index::new(g);
    let live = live_nodes(g);
    let found = (0..g.node.len())
        .filter(|&i| live[i])
        .find_map(|i| head_parts(g, &ix, i).map(|h| (i, h)));
    let Some((i, (node, inits))) = found else {
        return 0;
    };
    g.node[i] = node;
    g.initializer.extend(inits);
    1
}

/// The native head node replacing the `Gemm` at `gi`, and its new initializers.
fn head_parts(
    g: &pb::GraphProto,
    ix: &Index,
    gi: usize,
) -> Option<(pb::NodeProto, Vec<pb::TensorProto>)> {
    let gemm = &g.node[gi];
    let float =
        |n: &pb::NodeProto, name: &str, default: f32| attr(n, name).map_or(default, |a| a.f);
    if gemm.op_type != "Gemm"
        || gemm.output.len() != 1
        || attr_int(gemm, "transA").unwrap_or(0) != 0
        || attr_int(gemm, "transB").unwrap_or(0) != 1
        || float(gemm, "alpha", 1.0) != 1.0
        || float(gemm, "beta", 1.0) != 1.0
    {
        return None;
    }
    let flat = &g.node[*ix.producer.get(gemm.input.first()?)?];
    if flat.op_type != "Flatten" || attr_int(flat, "axis").unwrap_or(1) != 1 {
        return None;
    }
    let (pq, ps, pz) = ix.dequantized_u8(g, flat.input.first()?)?;
    let q = &g.node[*ix.producer.get(pq)?];
    (ix.quantize_u8(g, q)? == (ps, pz)).then_some(())?;
    let gap = &g.node[*ix.producer.get(q.input.first()?)?];
    if gap.op_type != "GlobalAveragePool" {
        return None;
    }
    let (xq, xs, xz) = ix.dequantized_u8(g, gap.input.first()?)?;
    (g.node[*ix.producer.get(xq)?].domain == DOMAIN).then_some(())?;
    // int8 weights [classes, channels], zero point 0, one scale or one per class.
    let wdq = &g.node[*ix.producer.get(gemm.input.get(1)?)?];
    let w = wdq.input.first()?;
    let dims = ix.dims(w)?;
    if wdq.op_type != "DequantizeLinear"
        || ix.dtype(w)? != DataType::Int8
        || dims.len() != 2
        || dims.iter().any(|&d| d <= 0)
    {
        return None;
    }
    let classes = dims[0] as usize;
    // The native head's own limit on the depth of its dot product.
    (dims[1] <= 1 << 14).then_some(())?;
    if let Some(z) = wdq.input.get(2).filter(|z| !z.is_empty()) {
        if ix.init_values_in(g, z)?.iter().any(|&z| z != 0.0) {
            return None;
        }
    }
    let mut w_scales = ix.init_values_in(g, wdq.input.get(1)?)?;
    if w_scales.len() == 1 {
        w_scales = vec![w_scales[0]; classes];
    } else if attr_int(wdq, "axis").unwrap_or(1) != 0 {
        return None;
    }
    (w_scales.len() == classes).then_some(())?;
    let bias = float_bias(g, ix, gemm.input.get(2), classes)?;
    let f32s = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let name = format!("{}.native", gemm.name);
    let inits = vec![
        raw_init(
            format!("{name}.bias"),
            DataType::Float,
            vec![classes as i64],
            f32s(bias.iter().map(|&b| b as f32).collect()),
        ),
        raw_init(
            format!("{name}.multiplier"),
            DataType::Float,
            vec![classes as i64],
            f32s(w_scales.iter().map(|&s| (ps * s) as f32).collect()),
        ),
    ];
    let node = native_node(
        name.clone(),
        HEAD_OP,
        vec![
            xq.into(),
            w.clone(),
            format!("{name}.bias"),
            format!("{name}.multiplier"),
        ],
        gemm.output.clone(),
        vec![
            float_attr("x_scale", xs as f32),
            int_attr("x_zero", xz as i64),
            float_attr("pool_scale", ps as f32),
            int_attr("pool_zero", pz as i64),
        ],
    );
    Some((node, inits))
}

/// Ops that compute element by element with per-tensor parameters, so any layout will do.
fn layout_free(n: &pb::NodeProto, dims: &HashMap<String, Vec<i64>>) -> bool {
    let scalar_params = n
        .input
        .iter()
        .filter(|t| dims.contains_key(*t))
        .all(|t| dims[t].iter().product::<i64>() <= 1);
    matches!(
        n.op_type.as_str(),
        "QuantizeLinear" | "DequantizeLinear" | "Relu" | "Add" | "QLinearAdd"
    ) && scalar_params
}

fn transpose(input: &str, output: &str, perm: [i64; 4]) -> pb::NodeProto {
    pb::NodeProto {
        name: output.into(),
        op_type: "Transpose".into(),
        input: vec![input.into()],
        output: vec![output.into()],
        attribute: vec![ints_attr("perm", perm.to_vec())],
        ..Default::default()
    }
}

/// Makes native ops read and write NHWC, converting at the region's borders. `false` if a graph
/// output would be NHWC.
fn assign_layouts(g: &mut pb::GraphProto) -> bool {
    let inits: HashMap<String, Vec<i64>> = g
        .initializer
        .iter()
        .map(|t| (t.name.clone(), t.dims.clone()))
        .collect();
    let mut nhwc: HashSet<String> = HashSet::new();
    let mut to_nhwc: HashMap<String, String> = HashMap::new();
    let mut to_nchw: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(g.node.len() + 4);
    for mut n in std::mem::take(&mut g.node) {
        let native = n.domain == DOMAIN;
        // The native quantization reads NCHW and writes NHWC.
        let from_nchw = native && n.op_type == QUANTIZE_OP;
        let acts: Vec<usize> = (0..n.input.len())
            .filter(|&k| !n.input[k].is_empty() && !inits.contains_key(&n.input[k]))
            .collect();
        let wants_nhwc = (native && !from_nchw)
            || (layout_free(&n, &inits) && acts.iter().any(|&k| nhwc.contains(&n.input[k])));
        for k in acts {
            let t = n.input[k].clone();
            if wants_nhwc && !nhwc.contains(&t) {
                let name = to_nhwc.entry(t.clone()).or_insert_with(|| {
                    let name = format!("{t}.nhwc");
                    out.push(transpose(&t, &name, [0, 2, 3, 1]));
                    name
                });
                n.input[k] = name.clone();
            } else if !wants_nhwc && nhwc.contains(&t) {
                let name = to_nchw.entry(t.clone()).or_insert_with(|| {
                    let name = format!("{t}.nchw");
                    out.push(transpose(&t, &name, [0, 3, 1, 2]));
                    name
                });
                n.input[k] = name.clone();
            }
        }
        // The head's logits have no spatial layout.
        let to_flat = native && n.op_type == HEAD_OP;
        if (wants_nhwc && !to_flat) || from_nchw {
            nhwc.extend(n.output.iter().cloned());
        }
        out.push(n);
    }
    g.node = out;
    !g.output.iter().any(|o| nhwc.contains(&o.name))
}

/// Drops nodes whose outputs nothing reads, and initializers no node reads.
/// The largest weight [`fold_weight_dequantize`] turns into floats (64 MB of them).
const MAX_FOLDED: usize = 1 << 24;

/// Replaces each `DequantizeLinear` of an 8-bit initializer that the native ops left (the
/// classifier's weights) by the float initializer it computes, `(x - zero) * scale` in f32 as
/// tract would each run: tract keeps such a cast unfolded (it would grow the constant), so the
/// weights were converted and repacked on every inference. Per-tensor and per-axis parameters.
/// Returns how many were folded.
fn fold_weight_dequantize(g: &mut pb::GraphProto) -> usize {
    let inits: HashMap<&str, &pb::TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let inputs: HashSet<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    let constant = |name: &str| inits.get(name).filter(|_| !inputs.contains(name)).copied();
    let mut folded = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type != "DequantizeLinear"
            || !(2..=3).contains(&n.input.len())
            || n.output.len() != 1
        {
            continue;
        }
        let Some(x) = constant(&n.input[0]) else {
            continue;
        };
        let eight_bit = [DataType::Int8 as i32, DataType::Uint8 as i32].contains(&x.data_type);
        let elements = x
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?));
        let (Some(elements), true) = (elements, eight_bit) else {
            continue;
        };
        if elements > MAX_FOLDED {
            continue;
        }
        let Some(scale) = constant(&n.input[1]).and_then(values) else {
            continue;
        };
        let zero = match n.input.get(2).filter(|z| !z.is_empty()) {
            Some(z) => match constant(z).and_then(values) {
                Some(v) => v,
                None => continue,
            },
            None => vec![0.0; scale.len()],
        };
        let Some(xv) = values(x).filter(|v| v.len() == elements) else {
            continue;
        };
        // Which parameter each element takes: one for all, or one per index of `axis`.
        let rank = x.dims.len() as i64;
        let axis = attr_int(n, "axis").unwrap_or(1);
        let axis = if axis < 0 { axis + rank } else { axis };
        let per_axis = scale.len() > 1;
        let (len, inner) = if per_axis {
            let Some(a) = usize::try_from(axis).ok().filter(|&a| a < x.dims.len()) else {
                continue;
            };
            let inner: usize = x.dims[a + 1..].iter().map(|&d| d as usize).product();
            (x.dims[a] as usize, inner)
        } else {
            (1, 1)
        };
        if scale.len() != len || zero.len() != len {
            continue;
        }
        let raw: Vec<u8> = xv
            .iter()
            .enumerate()
            .flat_map(|(e, &v)| {
                let c = if per_axis { e / inner % len } else { 0 };
                let f = (v as i32 - zero[c] as i32) as f32 * scale[c] as f32;
                f.to_le_bytes()
            })
            .collect();
        folded.push((
            i,
            raw_init(n.output[0].clone(), DataType::Float, x.dims.clone(), raw),
        ));
    }
    let count = folded.len();
    let drop: HashSet<usize> = folded.iter().map(|(i, _)| *i).collect();
    let mut k = 0;
    g.node.retain(|_| {
        k += 1;
        !drop.contains(&(k - 1))
    });
    g.initializer.extend(folded.into_iter().map(|(_, t)| t));
    count
}

/// Which nodes feed a graph output, and the names they read (nodes are in topological order).
fn live(g: &pb::GraphProto) -> (Vec<bool>, HashSet<String>) {
    let mut used: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let mut live = vec![false; g.node.len()];
    for (i, n) in g.node.iter().enumerate().rev() {
        if n.output.iter().any(|o| used.contains(o)) {
            live[i] = true;
            used.extend(n.input.iter().cloned());
        }
    }
    (live, used)
}

fn live_nodes(g: &pb::GraphProto) -> Vec<bool> {
    live(g).0
}

fn remove_dead(g: &mut pb::GraphProto) {
    let (live, used) = live(g);
    let mut k = 0;
    g.node.retain(|_| {
        k += 1;
        live[k - 1]
    });
    g.initializer.retain(|t| used.contains(&t.name));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dq(x: &str, scale: &str, zero: &str, out: &str, axis: Option<i64>) -> pb::NodeProto {
        pb::NodeProto {
            op_type: "DequantizeLinear".into(),
            input: vec![x.into(), scale.into(), zero.into()],
            output: vec![out.into()],
            attribute: axis.map(|a| int_attr("axis", a)).into_iter().collect(),
            ..Default::default()
        }
    }

    fn floats(t: &pb::TensorProto) -> Vec<f32> {
        values(t).unwrap().into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn weight_dequantization_becomes_a_float_initializer() {
        let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut g = pb::GraphProto {
            node: vec![
                dq("w", "s", "z", "w_f", Some(0)),
                dq("u", "su", "zu", "u_f", None),
                // Not a constant: stays.
                dq("input", "su", "zu", "in_f", None),
            ],
            initializer: vec![
                raw_init(
                    "w".into(),
                    DataType::Int8,
                    vec![2, 3],
                    vec![1, 2, 3, 0xFF, 0, 5],
                ),
                raw_init("s".into(), DataType::Float, vec![2], f(&[0.5, 2.0])),
                raw_init("z".into(), DataType::Int8, vec![2], vec![1, 0xFF]),
                raw_init("u".into(), DataType::Uint8, vec![2], vec![200, 10]),
                raw_init("su".into(), DataType::Float, vec![], f(&[0.25])),
                raw_init("zu".into(), DataType::Uint8, vec![], vec![128]),
            ],
            ..Default::default()
        };
        assert_eq!(fold_weight_dequantize(&mut g), 2);
        let ops: Vec<_> = g.node.iter().map(|n| n.input[0].as_str()).collect();
        assert_eq!(ops, ["input"]);
        let init = |name: &str| g.initializer.iter().find(|t| t.name == name).unwrap();
        // Row 0: (x - 1) * 0.5; row 1: (x + 1) * 2.
        assert_eq!(floats(init("w_f")), [0.0, 0.5, 1.0, 0.0, 2.0, 12.0]);
        assert_eq!(init("w_f").dims, [2, 3]);
        assert_eq!(floats(init("u_f")), [18.0, -29.5]);
    }
}

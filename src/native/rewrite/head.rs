//! The ends of the native region: the network input's quantization (written NHWC directly)
//! and the classifier head (average pool and fully connected layer on int8 values).

use super::cleanup::live_nodes;
use super::conv::float_bias;
use super::graph::*;
use crate::native::ops::{DOMAIN, HEAD_OP, QUANTIZE_OP};
use crate::onnx_build::{attr, new_float_attr, new_int_attr, raw_tensor, read_int_attr};
use std::collections::HashSet;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// Replaces the `QuantizeLinear` (per-tensor, u8) of a graph input whose every consumer is a
/// native op by the native quantization, which writes NHWC directly (instead of a quantization
/// and a transpose). Returns how many (0 or 1 for a classifier).
pub(super) fn native_input_quantize(g: &mut pb::GraphProto) -> usize {
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
                    new_float_attr("scale", scale as f32),
                    new_int_attr("zero", zero as i64),
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
pub(super) fn native_head(g: &mut pb::GraphProto) -> usize {
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
pub(super) fn head_parts(
    g: &pb::GraphProto,
    ix: &Index,
    gi: usize,
) -> Option<(pb::NodeProto, Vec<pb::TensorProto>)> {
    let gemm = &g.node[gi];
    let float =
        |n: &pb::NodeProto, name: &str, default: f32| attr(n, name).map_or(default, |a| a.f);
    if gemm.op_type != "Gemm"
        || gemm.output.len() != 1
        || read_int_attr(gemm, "transA").unwrap_or(0) != 0
        || read_int_attr(gemm, "transB").unwrap_or(0) != 1
        || float(gemm, "alpha", 1.0) != 1.0
        || float(gemm, "beta", 1.0) != 1.0
    {
        return None;
    }
    let flat = &g.node[*ix.producer.get(gemm.input.first()?)?];
    if flat.op_type != "Flatten" || read_int_attr(flat, "axis").unwrap_or(1) != 1 {
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
    } else if read_int_attr(wdq, "axis").unwrap_or(1) != 0 {
        return None;
    }
    (w_scales.len() == classes).then_some(())?;
    let bias = float_bias(g, ix, gemm.input.get(2), classes)?;
    let f32s = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let name = format!("{}.native", gemm.name);
    let inits = vec![
        raw_tensor(
            format!("{name}.bias"),
            DataType::Float,
            vec![classes as i64],
            f32s(bias.iter().map(|&b| b as f32).collect()),
        ),
        raw_tensor(
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
            new_float_attr("x_scale", xs as f32),
            new_int_attr("x_zero", xz as i64),
            new_float_attr("pool_scale", ps as f32),
            new_int_attr("pool_zero", pz as i64),
        ],
    );
    Some((node, inits))
}

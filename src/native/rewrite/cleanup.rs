//! After the rewrite: the weights the native ops left in DQ form folded to floats once, and
//! the nodes and initializers nothing reads any more dropped.

use super::graph::*;
use crate::onnx_build::{raw_tensor, read_int_attr};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// The largest weight [`fold_weight_dequantize`] turns into floats (64 MB of them).
pub(super) const MAX_FOLDED: usize = 1 << 24;

/// Replaces each `DequantizeLinear` of an 8-bit initializer that the native ops left (the
/// classifier's weights) by the float initializer it computes, `(x - zero) * scale` in f32 as
/// tract would each run: tract keeps such a cast unfolded (it would grow the constant), so the
/// weights were converted and repacked on every inference. Per-tensor and per-axis parameters.
/// Returns how many were folded.
pub(super) fn fold_weight_dequantize(g: &mut pb::GraphProto) -> usize {
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
        let axis = read_int_attr(n, "axis").unwrap_or(1);
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
            raw_tensor(n.output[0].clone(), DataType::Float, x.dims.clone(), raw),
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
pub(super) fn live(g: &pb::GraphProto) -> (Vec<bool>, HashSet<String>) {
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

pub(super) fn live_nodes(g: &pb::GraphProto) -> Vec<bool> {
    live(g).0
}

/// Drops nodes whose outputs nothing reads, and initializers no node reads.
pub(super) fn remove_dead(g: &mut pb::GraphProto) {
    let (live, used) = live(g);
    let mut k = 0;
    g.node.retain(|_| {
        k += 1;
        live[k - 1]
    });
    g.initializer.retain(|t| used.contains(&t.name));
}

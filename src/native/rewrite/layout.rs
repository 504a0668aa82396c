//! NHWC inside the native region: elementwise consumers keep the layout, a `Transpose` goes in
//! only before an op that needs NCHW.

use crate::native::ops::{DOMAIN, HEAD_OP, QUANTIZE_OP};
use crate::onnx_build::new_ints_attr;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;

/// Ops that compute element by element with per-tensor parameters, so any layout will do.
pub(super) fn layout_free(n: &pb::NodeProto, dims: &HashMap<String, Vec<i64>>) -> bool {
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

pub(super) fn transpose(input: &str, output: &str, perm: [i64; 4]) -> pb::NodeProto {
    pb::NodeProto {
        name: output.into(),
        op_type: "Transpose".into(),
        input: vec![input.into()],
        output: vec![output.into()],
        attribute: vec![new_ints_attr("perm", perm.to_vec())],
        ..Default::default()
    }
}

/// Makes native ops read and write NHWC, converting at the region's borders. `false` if a graph
/// output would be NHWC.
pub(super) fn assign_layouts(g: &mut pb::GraphProto) -> bool {
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

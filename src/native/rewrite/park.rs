//! The rewrite's last step: each native convolution's int8 weights packed for the kernel set in
//! use and parked ([`crate::native::parked`]). The node names their key instead of the weight
//! input, and the weight initializer gives up its bytes when no other live node reads it, so
//! the protobuf's copy is freed layer by layer as the packed one is made.

use super::cleanup::live_nodes;
use super::conv::int8_values;
use super::graph::values;
use crate::kernels;
use crate::kernels::conv::{ConvGeometry, PackedWeights};
use crate::native::ops::{CONV_OP, DOMAIN};
use crate::native::parked::Parked;
use crate::onnx_build::{new_int_attr, read_int_attr};
use std::collections::HashMap;
use tract_onnx::pb;

/// Packs and parks the weights of every live native convolution of `g`; returns how many.
pub(super) fn park_weights(g: &mut pb::GraphProto, parked: &mut Parked) -> usize {
    let live = live_nodes(g);
    let mut readers: HashMap<String, usize> = HashMap::new();
    for (n, _) in g.node.iter().zip(&live).filter(|(_, l)| **l) {
        for i in &n.input {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    let inits: HashMap<String, usize> = g
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let family = kernels::selected().family();
    let mut count = 0;
    for (ni, &is_live) in live.iter().enumerate() {
        let n = &g.node[ni];
        if !is_live || n.domain != DOMAIN || n.op_type != CONV_OP || n.input.len() < 4 {
            continue;
        }
        let (Some(&wi), Some(&bi)) = (inits.get(&n.input[1]), inits.get(&n.input[2])) else {
            continue;
        };
        let Some((geom, in_zero)) = geometry(n, &g.initializer[wi].dims) else {
            continue;
        };
        let Some(bias) = values(&g.initializer[bi])
            .map(|v| v.into_iter().map(|b| b as i32).collect::<Vec<i32>>())
            .filter(|b| b.len() == geom.out_c)
        else {
            continue;
        };
        let n_weights = geom.out_c * geom.depth();
        // The only reader: its bytes are taken (reinterpreted in place, not copied).
        let w = if readers.get(&n.input[1]) == Some(&1) {
            take_int8(&mut g.initializer[wi], n_weights)
        } else {
            int8_values(&g.initializer[wi], n_weights)
        };
        let Some(w) = w else {
            continue;
        };
        let key = parked.park(PackedWeights::pack(&geom, &w, &bias, in_zero, family));
        let n = &mut g.node[ni];
        n.input.remove(1);
        n.attribute.push(new_int_attr("packed", key as i64));
        count += 1;
    }
    count
}

/// The `n` values of an int8 initializer, taken out of it: `raw_data` reused in place (`u8` to
/// `i8` keeps the allocation), or `int32_data` narrowed.
fn take_int8(t: &mut pb::TensorProto, n: usize) -> Option<Vec<i8>> {
    let raw = std::mem::take(&mut t.raw_data);
    let ints = std::mem::take(&mut t.int32_data);
    if raw.len() == n {
        Some(raw.into_iter().map(|b| b as i8).collect())
    } else if raw.is_empty() && ints.len() == n {
        Some(ints.into_iter().map(|v| v as i8).collect())
    } else {
        None
    }
}

/// The geometry of native conv `n` with weights of `dims` (`[out, in / groups, k, k]`), on an
/// input of one window (the input size does not enter the packed layout), and its input zero
/// point; `None` if the attributes do not make a convolution.
fn geometry(n: &pb::NodeProto, dims: &[i64]) -> Option<(ConvGeometry, i32)> {
    let attr = |name| read_int_attr(n, name).and_then(|v| usize::try_from(v).ok());
    let [out, cin, k, k2] = dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<_>>>()?
        .try_into()
        .ok()?;
    let (kernel, groups) = (attr("kernel")?, attr("group")?);
    (k == kernel && k2 == kernel).then_some(())?;
    let geom = ConvGeometry {
        in_h: kernel,
        in_w: kernel,
        in_c: groups.checked_mul(cin)?,
        out_c: out,
        groups,
        kernel,
        stride: attr("stride")?,
        pad: attr("pad")?,
    };
    geom.check().ok()?;
    let in_zero = i32::try_from(read_int_attr(n, "in_zero")?).ok()?;
    Some((geom, in_zero))
}

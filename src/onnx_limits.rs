//! Sanity of an ONNX file's tensors before tract allocates them.
//!
//! A model file comes from anywhere. Its initializers and constant attributes declare their
//! shapes separately from their data, and tract allocates what the shape says: a 100-byte file
//! that declares a `[1000000, 1000000]` float tensor would ask for 4 TB. This module walks the
//! parsed protobuf (graphs nested in attributes included) and refuses, naming the tensor, any
//! shape with a negative dimension, an element count above [`MAX_TENSOR_ELEMENTS`], or data whose
//! length does not match the shape. What passes holds no more elements than the file holds bytes
//! of data (external data excepted, which tract reads from files beside the model only).
//! Convolution and pooling nodes get their window attributes checked too: tract indexes them
//! assuming one value per spatial axis.

use tract_onnx::pb::{GraphProto, NodeProto, TensorProto};

/// The most elements one tensor may have: 2^28, 100x the largest weight of a ResNeXt-101 32x8d.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 28;

/// Bytes per element of an ONNX `TensorProto.DataType`, `None` for strings and unknown types.
fn element_size(data_type: i32) -> Option<u64> {
    Some(match data_type {
        2 | 3 | 9 => 1,        // uint8, int8, bool
        4 | 5 | 10 | 16 => 2,  // uint16, int16, float16, bfloat16
        1 | 6 | 12 => 4,       // float, int32, uint32
        7 | 11 | 13 | 14 => 8, // int64, double, uint64, complex64
        15 => 16,              // complex128
        _ => return None,
    })
}

/// Elements held by the typed (non-raw) data field that `data_type` uses.
fn typed_len(t: &TensorProto) -> u64 {
    (match t.data_type {
        1 => t.float_data.len(),
        14 => t.float_data.len() / 2,
        2 | 3 | 4 | 5 | 6 | 9 | 10 | 16 => t.int32_data.len(),
        7 => t.int64_data.len(),
        11 => t.double_data.len(),
        15 => t.double_data.len() / 2,
        12 | 13 => t.uint64_data.len(),
        8 => t.string_data.len(),
        _ => 0,
    }) as u64
}

/// Checks one tensor: `what` names where it sits, for the error.
pub fn check_tensor(t: &TensorProto, what: &str) -> Result<(), String> {
    let name = if t.name.is_empty() { what } else { &t.name };
    let mut elements: u64 = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(format!(
                "tensor `{name}` has a negative dimension in {:?}",
                t.dims
            ));
        }
        elements = elements
            .checked_mul(d as u64)
            .filter(|&e| e <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "tensor `{name}` of shape {:?} has more than the supported {MAX_TENSOR_ELEMENTS} elements",
                    t.dims
                )
            })?;
    }
    if !t.external_data.is_empty() {
        return Ok(());
    }
    let mismatch = |held: u64, unit: &str| {
        Err(format!(
            "tensor `{name}` of shape {:?} needs {elements} elements but holds {held} {unit}",
            t.dims
        ))
    };
    if !t.raw_data.is_empty() {
        let Some(size) = element_size(t.data_type) else {
            return Err(format!(
                "tensor `{name}` has raw data of element type {}, which has no fixed size",
                t.data_type
            ));
        };
        let held = t.raw_data.len() as u64;
        if held != elements * size {
            return mismatch(held, "bytes of raw data");
        }
        return Ok(());
    }
    let held = typed_len(t);
    if held != elements {
        return mismatch(held, "elements of data");
    }
    Ok(())
}

/// Checks the window attributes of a convolution or pooling node: `kernel_shape`, `strides`
/// and `dilations` with one positive value per spatial axis, `pads` with two non-negative ones
/// (tract indexes them without checking).
pub fn check_window(node: &NodeProto) -> Result<(), String> {
    const WINDOWED: &[&str] = &[
        "Conv",
        "ConvInteger",
        "QLinearConv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "LpPool",
    ];
    if !WINDOWED.contains(&node.op_type.as_str()) {
        return Ok(());
    }
    let ints = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.ints.as_slice())
    };
    let bad = |what: &str| Err(format!("{} node `{}`: {what}", node.op_type, node.name));
    let axes = ints("kernel_shape")
        .map(|k| k.len())
        .or_else(|| ints("strides").map(|s| s.len()))
        .or_else(|| ints("pads").map(|p| p.len() / 2));
    let Some(axes) = axes else { return Ok(()) };
    for (name, len, min) in [
        ("kernel_shape", axes, 1),
        ("strides", axes, 1),
        ("dilations", axes, 1),
        ("pads", 2 * axes, 0),
    ] {
        if let Some(v) = ints(name) {
            if v.len() != len {
                return bad(&format!("`{name}` has {} values, expected {len}", v.len()));
            }
            if v.iter().any(|&x| !(min..=1 << 16).contains(&x)) {
                return bad(&format!("`{name}` {v:?} is out of range"));
            }
        }
    }
    Ok(())
}

/// Checks that every output of the (top-level) graph is produced by a node, an initializer or
/// an input (tract looks them up unchecked).
pub fn check_outputs(graph: &GraphProto) -> Result<(), String> {
    let produced: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .chain(graph.initializer.iter().map(|t| &t.name))
        .chain(graph.input.iter().map(|i| &i.name))
        .map(String::as_str)
        .collect();
    match graph
        .output
        .iter()
        .find(|o| !produced.contains(o.name.as_str()))
    {
        Some(o) => Err(format!("graph output `{}` is produced by nothing", o.name)),
        None => Ok(()),
    }
}

/// Checks every initializer and constant attribute tensor of `graph` and of the graphs nested
/// in its nodes' attributes, and the window attributes of its convolution and pooling nodes.
pub fn check_graph(graph: &GraphProto) -> Result<(), String> {
    for t in &graph.initializer {
        check_tensor(t, "initializer")?;
    }
    for node in &graph.node {
        check_window(node)?;
        for attr in &node.attribute {
            let what = format!("attribute `{}` of node `{}`", attr.name, node.name);
            if let Some(t) = &attr.t {
                check_tensor(t, &what)?;
            }
            for t in &attr.tensors {
                check_tensor(t, &what)?;
            }
            if let Some(g) = &attr.g {
                check_graph(g)?;
            }
            for g in &attr.graphs {
                check_graph(g)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float_tensor(dims: Vec<i64>, raw_len: usize) -> TensorProto {
        TensorProto {
            name: "w".into(),
            dims,
            data_type: 1,
            raw_data: vec![0; raw_len],
            ..Default::default()
        }
    }

    #[test]
    fn window_attributes_need_one_value_per_axis() {
        let node = |pads: Vec<i64>| NodeProto {
            name: "c".into(),
            op_type: "Conv".into(),
            attribute: vec![
                tract_onnx::pb::AttributeProto {
                    name: "kernel_shape".into(),
                    ints: vec![3, 3],
                    ..Default::default()
                },
                tract_onnx::pb::AttributeProto {
                    name: "pads".into(),
                    ints: pads,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        check_window(&node(vec![1, 1, 1, 1])).unwrap();
        let e = check_window(&node(vec![18874367])).unwrap_err();
        assert_eq!(e, "Conv node `c`: `pads` has 1 values, expected 4");
        let e = check_window(&node(vec![-1, 0, 0, 0])).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn a_graph_output_nothing_produces_is_refused() {
        let mut g = GraphProto {
            node: vec![NodeProto {
                output: vec!["y".into()],
                ..Default::default()
            }],
            output: vec![tract_onnx::pb::ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        check_outputs(&g).unwrap();
        g.output[0].name = "z".into();
        assert_eq!(
            check_outputs(&g).unwrap_err(),
            "graph output `z` is produced by nothing"
        );
    }

    #[test]
    fn a_consistent_tensor_passes() {
        check_tensor(&float_tensor(vec![2, 3], 24), "x").unwrap();
        check_tensor(&float_tensor(vec![0, 3], 0), "x").unwrap();
        let typed = TensorProto {
            dims: vec![2],
            data_type: 7,
            int64_data: vec![1, 2],
            ..Default::default()
        };
        check_tensor(&typed, "x").unwrap();
    }

    #[test]
    fn a_shape_bigger_than_its_data_is_refused_before_allocation() {
        let e = check_tensor(&float_tensor(vec![1_000_000, 1_000_000], 4), "x").unwrap_err();
        assert!(
            e.contains("`w`") && e.contains("more than the supported"),
            "{e}"
        );
        let e = check_tensor(&float_tensor(vec![i64::MAX, i64::MAX], 4), "x").unwrap_err();
        assert!(e.contains("more than the supported"), "{e}");
        let e = check_tensor(&float_tensor(vec![1000, 1000], 4), "x").unwrap_err();
        assert!(
            e.contains("needs 1000000 elements but holds 4 bytes"),
            "{e}"
        );
        let e = check_tensor(&float_tensor(vec![-1, 4], 4), "x").unwrap_err();
        assert!(e.contains("negative dimension"), "{e}");
        let empty = TensorProto {
            dims: vec![64],
            data_type: 3,
            ..Default::default()
        };
        let e = check_tensor(&empty, "attribute `value` of node `c`").unwrap_err();
        assert!(
            e.contains("attribute `value` of node `c`") && e.contains("holds 0"),
            "{e}"
        );
    }
}

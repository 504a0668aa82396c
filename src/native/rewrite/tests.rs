//! Unit tests of the rewrite's passes on protobuf graphs built here (the patterns end to end,
//! with tract, are in the runtime's `tests/native_patterns.rs`).

use super::cleanup::fold_weight_dequantize;
use super::graph::values;
use crate::onnx_build::{new_int_attr, raw_tensor};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

fn dq(x: &str, scale: &str, zero: &str, out: &str, axis: Option<i64>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: "DequantizeLinear".into(),
        input: vec![x.into(), scale.into(), zero.into()],
        output: vec![out.into()],
        attribute: axis.map(|a| new_int_attr("axis", a)).into_iter().collect(),
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
            raw_tensor("w", DataType::Int8, vec![2, 3], vec![1, 2, 3, 0xFF, 0, 5]),
            raw_tensor("s", DataType::Float, vec![2], f(&[0.5, 2.0])),
            raw_tensor("z", DataType::Int8, vec![2], vec![1, 0xFF]),
            raw_tensor("u", DataType::Uint8, vec![2], vec![200, 10]),
            raw_tensor("su", DataType::Float, vec![], f(&[0.25])),
            raw_tensor("zu", DataType::Uint8, vec![], vec![128]),
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

//! Shared by the runtime's command-line tests: a real (tiny) ONNX classifier built here, so
//! that the runtime crate tests on its own, and output parsing.
//!
//! The model: per-channel mean of the image (GlobalAveragePool) into a 3-class linear layer that
//! scores "red", "green", "blue". The ResNeXt models themselves are tested in the quantizer's
//! tests, which write them.
#![allow(dead_code)] // each test file uses part of it

#[path = "../../src/scratch_dir.rs"]
mod scratch_dir;
pub use scratch_dir::ScratchDir;
pub mod deadline;
pub mod frames;

use prost::Message;
use std::path::Path;
use std::process::Output;
use tract_onnx::pb;

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(d.map_or(Value::DimParam("N".into()), Value::DimValue)),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_init(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Writes the colour classifier to `path`.
pub fn colour_model(path: &Path) {
    colour_model_edited(path, |_| {});
}

/// Writes the colour classifier to `path` after `edit` (for malformed variants).
pub fn colour_model_edited(path: &Path, edit: impl FnOnce(&mut pb::ModelProto)) {
    let node = |op: &str, i: &[&str], o: &str, attribute: Vec<pb::AttributeProto>| pb::NodeProto {
        op_type: op.into(),
        name: o.into(),
        input: i.iter().map(|s| s.to_string()).collect(),
        output: vec![o.into()],
        attribute,
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "colours".into(),
        node: vec![
            node("GlobalAveragePool", &["input"], "pooled", vec![]),
            node("Flatten", &["pooled"], "flat", vec![attr_int("axis", 1)]),
            node(
                "Gemm",
                &["flat", "w", "b"],
                "logits",
                vec![attr_int("transB", 1)],
            ),
        ],
        initializer: vec![
            f32_init("w", &[3, 3], &[4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0]),
            f32_init("b", &[3], &[0.0, 0.0, 0.0]),
        ],
        input: vec![value_info("input", &[None, Some(3), Some(224), Some(224)])],
        output: vec![value_info("logits", &[None, Some(3)])],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        metadata_props: vec![pb::StringStringEntryProto {
            key: "resnext_edge.labels".into(),
            value: r#"["red","green","blue"]"#.into(),
        }],
        ..Default::default()
    };
    let mut model = model;
    edit(&mut model);
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

/// Standard output, one JSON value per line.
pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

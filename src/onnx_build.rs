//! Small helpers to read and build ONNX protobuf pieces (attributes, initializers, nodes,
//! typed graph inputs): what the native rewrite writes into a parsed model and what the tests
//! build their graphs from. The quantizer, which writes whole models, has its own writer.

use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

/// The attribute `name` of `n`.
pub fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// The integers of the attribute `name` of `n`.
pub fn read_ints_attr(n: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

/// The integer of the attribute `name` of `n`.
pub fn read_int_attr(n: &pb::NodeProto, name: &str) -> Option<i64> {
    attr(n, name).map(|a| a.i)
}

/// An integer attribute.
pub fn new_int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// An attribute of integers.
pub fn new_ints_attr(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

/// A float attribute.
pub fn new_float_attr(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// An initializer of type `dt` from its little-endian bytes.
pub fn raw_tensor(
    name: impl Into<String>,
    dt: DataType,
    dims: impl Into<Vec<i64>>,
    raw_data: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.into(),
        data_type: dt as i32,
        raw_data,
        ..Default::default()
    }
}

/// A float initializer.
pub fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, DataType::Float, dims, raw)
}

/// A node of the default domain whose name is its one output.
pub fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// A float tensor's name and shape (`None`: a symbolic dimension `N`), for graph inputs and
/// outputs.
pub fn f32_value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
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
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model of `graph` on the default ONNX domain at opset 13 (IR version 7), with `metadata`
/// as its key-value properties.
pub fn model(graph: pb::GraphProto, metadata: &[(&str, &str)]) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| pb::StringStringEntryProto {
                key: key.to_string(),
                value: value.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

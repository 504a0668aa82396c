//! A small builder over tract-onnx's protobuf types (`tract_onnx::pb`): initializers, nodes with
//! attributes, typed inputs and outputs, metadata, and the model header this project promises
//! (opset 13, IR version 7, so that every ONNX consumer of the last years reads it).

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

/// Default-domain opset the models are written against.
pub const OPSET: i64 = 13;
/// ONNX IR version (IR 7 goes with opset 13; tract and onnxruntime read it).
pub const IR_VERSION: i64 = 7;

/// An attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// One dimension of a graph input or output.
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// Builds one ONNX graph.
#[derive(Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    extra_opsets: Vec<(String, i64)>,
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n),
                Dim::Named(s) => Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: pb::GraphProto {
                name: name.to_string(),
                ..Default::default()
            },
            extra_opsets: Vec::new(),
        }
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.input.push(value_info(name, elem, dims));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    /// Adds a constant float32 tensor, stored little-endian in `raw_data`.
    pub fn f32_tensor(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_tensor(name, DataType::Float, dims, raw)
    }

    /// Adds a constant int64 tensor.
    pub fn i64_tensor(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_tensor(name, DataType::Int64, dims, raw)
    }

    /// Adds a constant tensor of any type from its little-endian bytes.
    pub fn raw_tensor(
        &mut self,
        name: &str,
        elem: DataType,
        dims: &[usize],
        raw_data: Vec<u8>,
    ) -> String {
        self.graph.initializer.push(pb::TensorProto {
            name: name.to_string(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: elem as i32,
            raw_data,
            ..Default::default()
        });
        name.to_string()
    }

    /// Adds a node of the default domain; returns its first output's name.
    pub fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        self.node_in_domain("", op, name, inputs, outputs, attrs)
    }

    /// Adds a node of `domain` (e.g. `com.microsoft`), declaring the domain's opset.
    pub fn node_in_domain(
        &mut self,
        domain: &str,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        if !domain.is_empty() && !self.extra_opsets.iter().any(|(d, _)| d == domain) {
            self.extra_opsets.push((domain.to_string(), 1));
        }
        let attribute = attrs
            .into_iter()
            .map(|(n, a)| {
                let mut p = pb::AttributeProto {
                    name: n.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => (p.r#type, p.i) = (AttributeType::Int as i32, i),
                    Attr::Ints(v) => (p.r#type, p.ints) = (AttributeType::Ints as i32, v),
                    Attr::Float(f) => (p.r#type, p.f) = (AttributeType::Float as i32, f),
                }
                p
            })
            .collect();
        self.graph.node.push(pb::NodeProto {
            name: name.to_string(),
            op_type: op.to_string(),
            domain: domain.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
        outputs[0].to_string()
    }

    /// The finished model, with `metadata` as `metadata_props`.
    pub fn finish(self, metadata: Vec<(String, String)>, doc: &str) -> pb::ModelProto {
        let mut opset_import = vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }];
        opset_import.extend(
            self.extra_opsets
                .into_iter()
                .map(|(domain, version)| pb::OperatorSetIdProto { domain, version }),
        );
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import,
            producer_name: "resnext-quantize".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_string(),
            graph: Some(self.graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }
}

/// Serializes a model to bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

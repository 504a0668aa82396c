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

//!
//! The files: this one (the pass, and the graph's lookups), [`conv`] (the convolution patterns
//! and the max pool), [`head`] (the network's input quantization and the classifier head),
//! [`layout`] (NHWC inside the native region), [`cleanup`] (weights folded, dead nodes dropped).

mod cleanup;
mod conv;
mod head;
mod layout;
#[cfg(test)]
mod tests;

use crate::native::ops::{CONV_OP, DOMAIN, HEAD_OP, MAX_POOL_OP, QUANTIZE_OP};
use crate::onnx_build::{
    attr, new_float_attr, new_int_attr, new_ints_attr, raw_tensor, read_int_attr, read_ints_attr,
};
use cleanup::{fold_weight_dequantize, remove_dead};
use conv::replace_patterns;
use head::{native_head, native_input_quantize};
use layout::assign_layouts;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;
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
pub(super) fn values(t: &pb::TensorProto) -> Option<Vec<f64>> {
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

/// A node of the native ops' domain.
pub(super) fn native_node(
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
pub(super) fn window(n: &pb::NodeProto) -> Option<(usize, usize, usize)> {
    let ks = read_ints_attr(n, "kernel_shape")?;
    let st = read_ints_attr(n, "strides").unwrap_or(vec![1, 1]);
    let pads = read_ints_attr(n, "pads").unwrap_or(vec![0; 4]);
    let dil = read_ints_attr(n, "dilations").unwrap_or(vec![1, 1]);
    let auto_pad_ok = attr(n, "auto_pad").is_none_or(|a| a.s.is_empty() || a.s == b"NOTSET");
    let ok = ks.len() == 2
        && ks[0] == ks[1]
        && st.len() == 2
        && st[0] == st[1]
        && pads.len() == 4
        && pads.iter().all(|&p| p == pads[0])
        && dil.iter().all(|&d| d == 1)
        && auto_pad_ok
        && read_int_attr(n, "ceil_mode").unwrap_or(0) == 0;
    ok.then_some((ks[0] as usize, st[0] as usize, pads[0] as usize))
}

/// The graph's lookups: built once; a replacement keeps the replaced node's place and outputs.
pub(super) struct Index {
    /// Initializer name -> position in the graph's initializers.
    pub(super) inits: HashMap<String, usize>,
    /// Per initializer: dims, data type, and the values of the small ones, decoded once.
    pub(super) init_protos: Vec<(Vec<i64>, i32, Option<Vec<f64>>)>,
    pub(super) producer: HashMap<String, usize>,
    pub(super) consumers: HashMap<String, Vec<usize>>,
    pub(super) outputs: HashSet<String>,
}

impl Index {
    pub(super) fn new(g: &pb::GraphProto) -> Self {
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

    pub(super) fn init_values_in(&self, g: &pb::GraphProto, name: &str) -> Option<Vec<f64>> {
        let &i = self.inits.get(name)?;
        match &self.init_protos[i].2 {
            Some(v) => Some(v.clone()),
            None => values(&g.initializer[i]),
        }
    }

    pub(super) fn dims(&self, name: &str) -> Option<&[i64]> {
        self.inits
            .get(name)
            .map(|&i| self.init_protos[i].0.as_slice())
    }

    pub(super) fn dtype(&self, name: &str) -> Option<DataType> {
        self.inits
            .get(name)
            .and_then(|&i| DataType::try_from(self.init_protos[i].1).ok())
    }

    /// A scalar (or one-element) initializer.
    pub(super) fn scalar(&self, g: &pb::GraphProto, name: &str) -> Option<f64> {
        self.init_values_in(g, name)
            .filter(|v| v.len() == 1)
            .map(|v| v[0])
    }

    /// The only consumer of `t`, if it has exactly one and is not a graph output.
    pub(super) fn sole_consumer<'g>(
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
    pub(super) fn dequantized_u8<'g>(
        &self,
        g: &'g pb::GraphProto,
        t: &str,
    ) -> Option<(&'g str, f64, i32)> {
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
    pub(super) fn quantize_u8(&self, g: &pb::GraphProto, n: &pb::NodeProto) -> Option<(f64, i32)> {
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

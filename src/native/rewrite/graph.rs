//! The graph as the patterns read it: lookups built once ([`Index`]: producers, consumers,
//! initializers and their small values), initializer values as numbers, the window attributes of
//! a convolution or pool, and the native node constructor.

use crate::native::ops::DOMAIN;
use crate::onnx_build::{attr, read_int_attr, read_ints_attr};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

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

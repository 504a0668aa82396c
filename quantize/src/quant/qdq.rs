//! The QDQ layout of an int8 model: `QuantizeLinear` / `DequantizeLinear` pairs on every
//! activation a layer reads, int8 weights (per output channel) and int32 biases behind
//! `DequantizeLinear`, around the float `Conv`, `Add`, `GlobalAveragePool` and `Gemm` of the
//! float graph. Standard ONNX only: onnxruntime and TensorRT fuse these patterns into integer
//! kernels, and the runtime's rewrite pass recognizes them.

use super::params::{quantize_bias, quantize_weights, ActType, QParams};
use crate::float_net::{Act, ActPoint, Emitter, FloatEmitter, FloatNet, FoldedConv};
use crate::onnx_builder::{Attr, GraphBuilder};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::tensor_proto::DataType;

/// Writes quantized tensors for [`crate::float_net::write_graph`].
pub struct QdqEmitter {
    pub act_type: ActType,
    /// Parameters of every activation point, by name.
    pub params: HashMap<String, QParams>,
    /// Points left in float (no Q/DQ; the layers reading them keep float weights).
    pub float_points: HashSet<String>,
}

impl QdqEmitter {
    /// Every point quantized.
    pub fn new(act_type: ActType, params: HashMap<String, QParams>) -> Self {
        QdqEmitter {
            act_type,
            params,
            float_points: HashSet::new(),
        }
    }
}

impl QdqEmitter {
    fn params_of(&self, point: &str) -> QParams {
        *self
            .params
            .get(point)
            .unwrap_or_else(|| panic!("no quantization parameters for `{point}`"))
    }

    fn zp_tensor(&self, g: &mut GraphBuilder, name: &str, zp: i32) -> String {
        match self.act_type {
            ActType::U8 => g.raw_tensor(name, DataType::Uint8, &[], vec![zp as u8]),
            ActType::S8 => g.raw_tensor(name, DataType::Int8, &[], vec![zp as i8 as u8]),
        }
    }

    /// int8 weights and int32 bias behind `DequantizeLinear` (per output channel, axis 0).
    fn weights(
        &mut self,
        g: &mut GraphBuilder,
        prefix: &str,
        dims: &[usize],
        w: &[f32],
        b: &[f32],
        input_scale: f32,
    ) -> (String, String) {
        let out = dims[0];
        let qw = quantize_weights(w, out);
        let wq = g.raw_tensor(
            &format!("{prefix}.weight.q"),
            DataType::Int8,
            dims,
            qw.q.iter().map(|&v| v as u8).collect(),
        );
        let ws = g.f32_tensor(&format!("{prefix}.weight.scale"), &[out], &qw.scales);
        let wz = g.raw_tensor(
            &format!("{prefix}.weight.zp"),
            DataType::Int8,
            &[out],
            vec![0; out],
        );
        let wname = format!("{prefix}.weight");
        g.node(
            "DequantizeLinear",
            &format!("{prefix}.weight.dq"),
            &[&wq, &ws, &wz],
            &[&wname],
            vec![("axis", Attr::Int(0))],
        );
        let (qb, bs) = quantize_bias(b, input_scale, &qw.scales);
        let bq = g.raw_tensor(
            &format!("{prefix}.bias.q"),
            DataType::Int32,
            &[out],
            qb.iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        let bsn = g.f32_tensor(&format!("{prefix}.bias.scale"), &[out], &bs);
        let bz = g.raw_tensor(
            &format!("{prefix}.bias.zp"),
            DataType::Int32,
            &[out],
            vec![0; out * 4],
        );
        let bname = format!("{prefix}.bias");
        g.node(
            "DequantizeLinear",
            &format!("{prefix}.bias.dq"),
            &[&bq, &bsn, &bz],
            &[&bname],
            vec![("axis", Attr::Int(0))],
        );
        (wname, bname)
    }
}

impl Emitter for QdqEmitter {
    fn activation(&mut self, g: &mut GraphBuilder, point: &ActPoint) -> String {
        let key = point.same_as.as_deref().unwrap_or(&point.name);
        if self.float_points.contains(key) {
            self.float_points.insert(point.name.clone());
            return point.name.clone();
        }
        let p = self.params_of(key);
        self.params.insert(point.name.clone(), p);
        let name = &point.name;
        let scale = g.f32_tensor(&format!("{name}.scale"), &[], &[p.scale]);
        let zp = self.zp_tensor(g, &format!("{name}.zp"), p.zero_point);
        let q = g.node(
            "QuantizeLinear",
            &format!("{name}.quantize"),
            &[name, &scale, &zp],
            &[&format!("{name}.q")],
            vec![],
        );
        g.node(
            "DequantizeLinear",
            &format!("{name}.dequantize"),
            &[&q, &scale, &zp],
            &[&format!("{name}.dq")],
            vec![],
        )
    }

    fn conv_weights(
        &mut self,
        g: &mut GraphBuilder,
        c: &FoldedConv,
        input: &Act,
    ) -> (String, String) {
        if self.float_points.contains(&input.point) {
            return FloatEmitter::default().conv_weights(g, c, input);
        }
        let s = self.params_of(&input.point).scale;
        self.weights(
            g,
            &c.shape.name,
            &c.shape.weight_shape(),
            &c.weight,
            &c.bias,
            s,
        )
    }

    fn fc_weights(
        &mut self,
        g: &mut GraphBuilder,
        net: &FloatNet,
        input: &Act,
    ) -> (String, String) {
        if self.float_points.contains(&input.point) {
            return FloatEmitter::default().fc_weights(g, net, input);
        }
        let s = self.params_of(&input.point).scale;
        let dims = [net.config.num_classes, net.config.feature_channels()];
        self.weights(g, "fc", &dims, &net.fc_weight, &net.fc_bias, s)
    }
}

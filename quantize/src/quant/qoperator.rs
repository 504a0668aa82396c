//! The QOperator layout of an int8 model: tensors travel quantized from layer to layer, and each
//! layer is one integer operator — `QLinearConv` (ReLU folded into its output range), the stem's
//! `MaxPool` on the quantized tensor, onnxruntime's `com.microsoft` `QLinearAdd` for the residual
//! add (its ReLU again folded into the output range) and `QLinearGlobalAveragePool`, and a
//! `QLinearMatMul` head whose product is dequantized before the float bias is added, so that the
//! logits stay float as in every other layout.
//!
//! Quantized tensors are named `X.q` with their parameters in `X.scale` / `X.zp`, where `X` is
//! the float model's tensor, which is how `evaluate` finds the per-layer error.

use super::params::{quantize_bias, quantize_weights, ActType, QParams};
use crate::float_net::{conv_attrs, max_pool_attrs, Act, ActPoint, Emitter, FloatNet, FoldedConv};
use crate::float_net::{INPUT, OUTPUT};
use crate::onnx_builder::{Attr, GraphBuilder};
use std::collections::HashMap;
use tract_onnx::pb::tensor_proto::DataType;

/// onnxruntime's contrib-op domain.
const MS_DOMAIN: &str = "com.microsoft";

/// Writes every layer as an integer operator for [`crate::float_net::write_graph`].
pub struct QOperatorEmitter {
    act_type: ActType,
    /// Parameters of every activation point, by name.
    params: HashMap<String, QParams>,
    /// Parameters of the head's product before its bias.
    head_params: QParams,
    /// `(scale, zero point)` tensor names already written, by point.
    written: HashMap<String, (String, String)>,
}

impl QOperatorEmitter {
    pub fn new(act_type: ActType, params: HashMap<String, QParams>, head_params: QParams) -> Self {
        QOperatorEmitter {
            act_type,
            params,
            head_params,
            written: HashMap::new(),
        }
    }

    fn params_of(&self, point: &str) -> QParams {
        *self
            .params
            .get(point)
            .unwrap_or_else(|| panic!("no quantization parameters for `{point}`"))
    }

    fn zp_type(&self) -> DataType {
        match self.act_type {
            ActType::U8 => DataType::Uint8,
            ActType::S8 => DataType::Int8,
        }
    }

    /// The scale and zero-point tensors of `point`, written on first use.
    fn qtensors(&mut self, g: &mut GraphBuilder, point: &str, p: QParams) -> (String, String) {
        if let Some(t) = self.written.get(point) {
            return t.clone();
        }
        let scale = g.f32_tensor(&format!("{point}.scale"), &[], &[p.scale]);
        let zp = g.raw_tensor(
            &format!("{point}.zp"),
            self.zp_type(),
            &[],
            vec![p.zero_point as i8 as u8],
        );
        self.written
            .insert(point.to_string(), (scale.clone(), zp.clone()));
        (scale, zp)
    }

    fn act_tensors(&mut self, g: &mut GraphBuilder, point: &str) -> (String, String) {
        let p = self.params_of(point);
        self.qtensors(g, point, p)
    }

    /// An output point whose ReLU is its quantized range's lower end.
    fn relu_point(&self, point: &str) -> QParams {
        let p = self.params_of(point);
        assert_eq!(
            p.zero_point,
            self.act_type.qmin(),
            "`{point}`: a ReLU output must have its zero point at the lowest level"
        );
        p
    }

    /// int8 weights `[rows, cols]`-major with one scale per output channel, and zero points.
    fn weight_tensors(
        &self,
        g: &mut GraphBuilder,
        prefix: &str,
        dims: &[usize],
        q: &[i8],
        scales: &[f32],
    ) -> (String, String, String) {
        let wq = g.raw_tensor(
            &format!("{prefix}.weight.q"),
            DataType::Int8,
            dims,
            q.iter().map(|&v| v as u8).collect(),
        );
        let ws = g.f32_tensor(&format!("{prefix}.weight.scale"), &[scales.len()], scales);
        let wz = g.raw_tensor(
            &format!("{prefix}.weight.zp"),
            DataType::Int8,
            &[scales.len()],
            vec![0; scales.len()],
        );
        (wq, ws, wz)
    }
}

impl Emitter for QOperatorEmitter {
    /// Only the float graph input is quantized by a `QuantizeLinear` of its own.
    fn activation(&mut self, g: &mut GraphBuilder, point: &ActPoint) -> String {
        let (s, z) = self.act_tensors(g, &point.name);
        let name = &point.name;
        g.node(
            "QuantizeLinear",
            &format!("{name}.quantize"),
            &[name, &s, &z],
            &[&format!("{name}.q")],
            vec![],
        )
    }

    fn conv_weights(&mut self, _: &mut GraphBuilder, _: &FoldedConv, _: &Act) -> (String, String) {
        unreachable!("QOperator convs write their own weights")
    }

    fn fc_weights(&mut self, _: &mut GraphBuilder, _: &FloatNet, _: &Act) -> (String, String) {
        unreachable!("the QOperator head writes its own weights")
    }

    fn input(&mut self, g: &mut GraphBuilder) -> Act {
        let read = self.activation(
            g,
            &ActPoint {
                name: INPUT.into(),
                nonneg: false,
                same_as: None,
            },
        );
        Act {
            point: INPUT.into(),
            read,
        }
    }

    fn conv(&mut self, g: &mut GraphBuilder, c: &FoldedConv, input: &Act, relu: bool) -> Act {
        let s = &c.shape;
        let out_point = if relu {
            format!("{}.relu", s.name)
        } else {
            s.name.clone()
        };
        let out_params = if relu {
            self.relu_point(&out_point)
        } else {
            self.params_of(&out_point)
        };
        let in_scale = self.params_of(&input.point).scale;
        let (xs, xz) = self.act_tensors(g, &input.point);
        let (ys, yz) = self.qtensors(g, &out_point, out_params);
        let qw = quantize_weights(&c.weight, s.out_channels);
        let (wq, ws, wz) = self.weight_tensors(g, &s.name, &s.weight_shape(), &qw.q, &qw.scales);
        let (qb, _) = quantize_bias(&c.bias, in_scale, &qw.scales);
        let bq = g.raw_tensor(
            &format!("{}.bias.q", s.name),
            DataType::Int32,
            &[s.out_channels],
            qb.iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        let read = g.node(
            "QLinearConv",
            &s.name,
            &[&input.read, &xs, &xz, &wq, &ws, &wz, &ys, &yz, &bq],
            &[&format!("{out_point}.q")],
            conv_attrs(s),
        );
        Act {
            point: out_point,
            read,
        }
    }

    fn max_pool(&mut self, g: &mut GraphBuilder, input: &Act) -> Act {
        let read = g.node(
            "MaxPool",
            "maxpool",
            &[&input.read],
            &["maxpool.q"],
            max_pool_attrs(),
        );
        let p = self.params_of(&input.point);
        self.params.insert("maxpool".into(), p);
        let tensors = self.act_tensors(g, &input.point);
        self.written.insert("maxpool".into(), tensors);
        Act {
            point: "maxpool".into(),
            read,
        }
    }

    fn residual(&mut self, g: &mut GraphBuilder, block: &str, y: &Act, identity: &Act) -> Act {
        let out_point = format!("{block}.out");
        let out_params = self.relu_point(&out_point);
        let (ys, yz) = self.act_tensors(g, &y.point);
        let (is, iz) = self.act_tensors(g, &identity.point);
        let (os, oz) = self.qtensors(g, &out_point, out_params);
        let read = g.node_in_domain(
            MS_DOMAIN,
            "QLinearAdd",
            &format!("{block}.add"),
            &[&y.read, &ys, &yz, &identity.read, &is, &iz, &os, &oz],
            &[&format!("{out_point}.q")],
            vec![],
        );
        Act {
            point: out_point,
            read,
        }
    }

    fn global_pool(&mut self, g: &mut GraphBuilder, x: &Act) -> Act {
        let (xs, xz) = self.act_tensors(g, &x.point);
        let (ys, yz) = self.act_tensors(g, "avgpool");
        let read = g.node_in_domain(
            MS_DOMAIN,
            "QLinearGlobalAveragePool",
            "avgpool",
            &[&x.read, &xs, &xz, &ys, &yz],
            &["avgpool.q"],
            vec![("channels_last", Attr::Int(0))],
        );
        Act {
            point: "avgpool".into(),
            read,
        }
    }

    fn head(&mut self, g: &mut GraphBuilder, net: &FloatNet, pooled: &Act) {
        let (classes, features) = (net.config.num_classes, net.config.feature_channels());
        let flat = g.node(
            "Flatten",
            "flatten",
            &[&pooled.read],
            &["flatten.q"],
            vec![("axis", Attr::Int(1))],
        );
        let (xs, xz) = self.act_tensors(g, &pooled.point);
        // QLinearMatMul's B is [features, classes], quantized per column (per class).
        let qw = quantize_weights(&net.fc_weight, classes);
        let mut transposed = vec![0i8; qw.q.len()];
        for (o, row) in qw.q.chunks_exact(features).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                transposed[i * classes + o] = v;
            }
        }
        let (wq, ws, wz) =
            self.weight_tensors(g, "fc", &[features, classes], &transposed, &qw.scales);
        let hp = self.head_params;
        let (ys, yz) = self.qtensors(g, "fc.matmul", hp);
        let product = g.node(
            "QLinearMatMul",
            "fc.matmul",
            &[&flat, &xs, &xz, &wq, &ws, &wz, &ys, &yz],
            &["fc.matmul.q"],
            vec![],
        );
        let product = g.node(
            "DequantizeLinear",
            "fc.matmul.dequantize",
            &[&product, &ys, &yz],
            &["fc.matmul"],
            vec![],
        );
        let bias = g.f32_tensor("fc.bias", &[classes], &net.fc_bias);
        g.node("Add", "fc.add", &[&product, &bias], &[OUTPUT], vec![]);
    }
}

/// Parameters for the head's product `x W^T` from the calibrated range `[lo, hi]` of the logits
/// (`x W^T + b`): the product lies within `[lo - max b, hi - min b]`.
pub fn head_params(logits_lo: f32, logits_hi: f32, bias: &[f32], ty: ActType) -> QParams {
    let bmax = bias.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let bmin = bias.iter().copied().fold(f32::INFINITY, f32::min);
    QParams::for_range(logits_lo - bmax, logits_hi - bmin, ty)
}

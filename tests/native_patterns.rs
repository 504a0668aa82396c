//! The native rewrite pattern by pattern, on small int8 graphs built here: each holds one form
//! the rewrite recognizes (QDQ convolutions, the fused residual add, `QLinearConv`, a
//! `QLinearAdd` between native convolutions, the max pool on one grid, the int8 classifier
//! head) or one it must leave alone (a float or dilated convolution). Each test checks the
//! native nodes the rewrite writes and the layout changes it inserts, then runs the file on the
//! native and the stock backend: stock tract runs the graph as written (float between the Q/DQ
//! pairs), the native ops in integers with one rounding per requantization, so the logits agree
//! within a few quantization steps of the last int8 tensor.

use pb::tensor_proto::DataType;
use prost::Message;
use resnext_edge::model::{Backend, Model};
use resnext_edge::native::ops::DOMAIN;
use resnext_edge::native::rewrite::rewrite;
use resnext_edge::onnx_build::{
    f32_tensor, f32_value_info, model, new_int_attr, new_ints_attr, node, raw_tensor,
};
use std::collections::BTreeMap;
use tract_onnx::pb;

/// Input side: images are `[1, 3, SIDE, SIDE]`.
const SIDE: usize = 32;
/// The grid of every activation the graphs quantize: scale, and zero point without a ReLU.
const STEP: f32 = 0.02;

/// A graph under construction, with deterministic pseudo-random weights.
struct Net {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    seed: u64,
}

impl Net {
    fn new() -> Self {
        Net {
            nodes: vec![],
            inits: vec![],
            seed: 0x2545_F491_4F6C_DD1D,
        }
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    fn add(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) {
        self.nodes.push(node(op, inputs, output, attrs));
    }

    /// Scalar initializers `{name}_s` (f32) and `{name}_z` (u8): a u8 grid.
    fn grid(&mut self, name: &str, scale: f32, zero: u8) -> (String, String) {
        let (s, z) = (format!("{name}_s"), format!("{name}_z"));
        self.inits.push(f32_tensor(&s, &[], &[scale]));
        self.inits
            .push(raw_tensor(&z, DataType::Uint8, &[] as &[i64], vec![zero]));
        (s, z)
    }

    /// `QuantizeLinear` of `x` to `{name}_q` on a new grid, then its `DequantizeLinear` to
    /// `{name}`: returns the u8 tensor and the grid.
    fn qdq(&mut self, x: &str, name: &str, zero: u8) -> (String, (String, String)) {
        let (s, z) = self.grid(name, STEP, zero);
        let q = format!("{name}_q");
        self.add("QuantizeLinear", &[x, &s, &z], &q, vec![]);
        self.add("DequantizeLinear", &[&q, &s, &z], name, vec![]);
        (q, (s, z))
    }

    /// Int8 weights `[out, cin, k, k]` in [-127, 127] with per-output-channel scales for an
    /// output of about unit size: `{name}_wq`, `{name}_ws`, `{name}_wz`.
    fn weights(&mut self, name: &str, out: usize, cin: usize, k: usize) -> [String; 3] {
        let n = out * cin * k * k;
        let w: Vec<u8> = (0..n)
            .map(|_| ((self.next() % 255) as i32 - 127) as i8 as u8)
            .collect();
        let fan = (cin * k * k) as f32;
        let scales: Vec<f32> = (0..out)
            .map(|o| (1.2 + 0.01 * o as f32) / (127.0 * fan.sqrt()))
            .collect();
        let names = ["wq", "ws", "wz"].map(|s| format!("{name}_{s}"));
        let dims = [out, cin, k, k].map(|d| d as i64).to_vec();
        self.inits
            .push(raw_tensor(&names[0], DataType::Int8, dims, w));
        self.inits
            .push(f32_tensor(&names[1], &[out as i64], &scales));
        self.inits.push(raw_tensor(
            &names[2],
            DataType::Int8,
            vec![out as i64],
            vec![0; out],
        ));
        names
    }

    /// A QDQ convolution of `x` (a dequantized u8 tensor of `cin` channels): `DQ(weights) ->
    /// Conv -> [Add(residual)] -> [Relu] -> Q -> DQ` to `{name}`; returns the Q output and grid.
    #[allow(clippy::too_many_arguments)]
    fn qdq_conv(
        &mut self,
        name: &str,
        x: &str,
        (cin, out, groups): (usize, usize, usize),
        (k, stride, dilation): (usize, usize, usize),
        relu: bool,
        residual: Option<&str>,
    ) -> (String, (String, String)) {
        let [wq, ws, wz] = self.weights(name, out, cin / groups, k);
        let (w, b) = (format!("{name}_w"), format!("{name}_b"));
        self.add(
            "DequantizeLinear",
            &[&wq, &ws, &wz],
            &w,
            vec![new_int_attr("axis", 0)],
        );
        let bias: Vec<f32> = (0..out).map(|o| 0.05 * (o % 5) as f32 - 0.1).collect();
        self.inits.push(f32_tensor(&b, &[out as i64], &bias));
        let mut y = format!("{name}_conv");
        let mut attrs = conv_attrs(groups, k, stride);
        attrs.push(new_ints_attr("dilations", vec![dilation as i64; 2]));
        self.add("Conv", &[x, &w, &b], &y, attrs);
        if let Some(r) = residual {
            let sum = format!("{name}_add");
            self.add("Add", &[&y, r], &sum, vec![]);
            y = sum;
        }
        if relu {
            let r = format!("{name}_relu");
            self.add("Relu", &[&y], &r, vec![]);
            y = r;
        }
        self.qdq(&y, name, if relu { 0 } else { 128 })
    }

    /// A `QLinearConv` of the u8 tensor `x` on grid `xg` to `{name}` (u8, zero point 128).
    fn qlinear_conv(
        &mut self,
        name: &str,
        (x, xg): (&str, &(String, String)),
        (cin, out, groups): (usize, usize, usize),
        (k, stride): (usize, usize),
    ) -> (String, (String, String)) {
        let [wq, ws, wz] = self.weights(name, out, cin / groups, k);
        let yg = self.grid(name, STEP, 128);
        let b = format!("{name}_b");
        let bias: Vec<u8> = (0..out as i32)
            .flat_map(|o| (o * 2000 - 15000).to_le_bytes())
            .collect();
        self.inits
            .push(raw_tensor(&b, DataType::Int32, vec![out as i64], bias));
        let inputs = [x, &xg.0, &xg.1, &wq, &ws, &wz, &yg.0, &yg.1, &b];
        self.add("QLinearConv", &inputs, name, conv_attrs(groups, k, stride));
        (name.to_string(), yg)
    }

    /// `GlobalAveragePool -> Flatten` of the float `x` to the graph output `logits`.
    fn float_tail(&mut self, x: &str) {
        self.add("GlobalAveragePool", &[x], "pooled", vec![]);
        self.add(
            "Flatten",
            &["pooled"],
            "logits",
            vec![new_int_attr("axis", 1)],
        );
    }

    fn model(self, classes: usize) -> pb::ModelProto {
        let graph = pb::GraphProto {
            name: "pattern".into(),
            node: self.nodes,
            initializer: self.inits,
            input: vec![f32_value_info(
                "input",
                &[None, Some(3), Some(SIDE as i64), Some(SIDE as i64)],
            )],
            output: vec![f32_value_info("logits", &[None, Some(classes as i64)])],
            ..Default::default()
        };
        let mut m = model(graph, &[("resnext_edge.crop", &SIDE.to_string())]);
        m.opset_import.push(pb::OperatorSetIdProto {
            domain: "com.microsoft".into(),
            version: 1,
        });
        m
    }
}

fn conv_attrs(groups: usize, k: usize, stride: usize) -> Vec<pb::AttributeProto> {
    vec![
        new_int_attr("group", groups as i64),
        new_ints_attr("kernel_shape", vec![k as i64; 2]),
        new_ints_attr("strides", vec![stride as i64; 2]),
        new_ints_attr("pads", vec![(k / 2) as i64; 4]),
    ]
}

/// What the rewrite made of `m`: native ops by type, and how many `Transpose` it inserted.
fn rewritten(m: &pb::ModelProto) -> (BTreeMap<String, usize>, usize, pb::GraphProto) {
    let r = rewrite(m.clone());
    let g = r.model.graph.unwrap();
    let mut ops = BTreeMap::new();
    for n in g.node.iter().filter(|n| n.domain == DOMAIN) {
        *ops.entry(n.op_type.clone()).or_default() += 1;
    }
    assert_eq!(ops.values().sum::<usize>(), r.native_ops, "{ops:?}");
    // Every native conv's weights are packed and parked; the node keeps their key.
    let convs: Vec<_> = g
        .node
        .iter()
        .filter(|n| n.op_type == "ResnextEdgeConv")
        .collect();
    assert_eq!(r.parked.len(), convs.len());
    assert!(convs
        .iter()
        .all(|n| n.attribute.iter().any(|a| a.name == "packed")));
    let transposes = g.node.iter().filter(|n| n.op_type == "Transpose").count();
    (ops, transposes, g)
}

/// The native and stock logits of `m` on three deterministic images: the largest difference,
/// and the largest logit magnitude.
fn native_vs_stock(m: &pb::ModelProto) -> (f32, f32) {
    let bytes = m.encode_to_vec();
    let mut native = Model::from_bytes(&bytes, "pattern.onnx", Backend::Native).unwrap();
    let mut stock = Model::from_bytes(&bytes, "pattern.onnx", Backend::Stock).unwrap();
    let (mut diff, mut size) = (0f32, 0f32);
    let mut seed = 0x9E37_79B9u32;
    for _ in 0..3 {
        let image: Vec<f32> = (0..3 * SIDE * SIDE)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        let (a, b) = (native.run(&image).unwrap(), stock.run(&image).unwrap());
        for (p, q) in a.iter().zip(&b) {
            diff = diff.max((p - q).abs());
            size = size.max(q.abs());
        }
    }
    (diff, size)
}

/// Asserts native and stock agree within `steps` of [`STEP`], on logits that are not all near
/// zero.
fn agree(m: &pb::ModelProto, steps: f32) {
    let (diff, size) = native_vs_stock(m);
    eprintln!("largest logit {size:.4}, largest difference {diff:.5}");
    assert!(size > 5.0 * STEP, "logits too small to compare: {size}");
    assert!(
        diff <= steps * STEP,
        "native and stock differ by {diff} (logits up to {size})"
    );
}

fn ops(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

/// The input quantized to u8 (zero point 128, for inputs in [-2.5, 2.5]): `x_q`, then `x`.
fn quantized_input(net: &mut Net) -> (String, (String, String)) {
    net.qdq("input", "x", 128)
}

#[test]
fn qdq_convolutions_become_native_convs_and_the_input_quantization_native() {
    let mut net = Net::new();
    quantized_input(&mut net);
    net.qdq_conv("stem", "x", (3, 16, 1), (3, 2, 1), true, None);
    net.qdq_conv("grouped", "stem", (16, 16, 4), (3, 1, 1), true, None);
    net.qdq_conv("pointwise", "grouped", (16, 16, 1), (1, 1, 1), false, None);
    net.float_tail("pointwise");
    let m = net.model(16);
    let (native, transposes, g) = rewritten(&m);
    assert_eq!(
        native,
        ops(&[("ResnextEdgeConv", 3), ("ResnextEdgeQuantizeNhwc", 1)])
    );
    // NHWC from the input on; back to NCHW once, before the float pool.
    assert_eq!(transposes, 1);
    assert!(!g.node.iter().any(|n| n.op_type == "Conv"));
    agree(&m, 1.0);
}

#[test]
fn a_residual_add_is_fused_into_the_convolution_before_it() {
    let mut net = Net::new();
    quantized_input(&mut net);
    net.qdq_conv("stem", "x", (3, 16, 1), (3, 2, 1), true, None);
    net.qdq_conv("block", "stem", (16, 16, 4), (3, 1, 1), true, Some("stem"));
    net.float_tail("block");
    let m = net.model(16);
    let (native, _, g) = rewritten(&m);
    assert_eq!(
        native,
        ops(&[("ResnextEdgeConv", 2), ("ResnextEdgeQuantizeNhwc", 1)])
    );
    assert!(!g.node.iter().any(|n| n.op_type == "Add"));
    let fused = g
        .node
        .iter()
        .filter(|n| n.op_type == "ResnextEdgeConv" && n.input.len() == 4)
        .count();
    // Inputs x, bias, multiplier, residual (the weights are packed and parked).
    assert_eq!(fused, 1, "one conv takes the residual input");
    // Stock rounds the convolution and the sum separately: two steps.
    agree(&m, 2.0);
}

#[test]
fn qlinear_convs_become_native_convs() {
    let mut net = Net::new();
    let (sx, zx) = net.grid("x", STEP, 128);
    net.add("QuantizeLinear", &["input", &sx, &zx], "x_q", vec![]);
    let g0 = (sx, zx);
    let (a, ga) = net.qlinear_conv("stem", ("x_q", &g0), (3, 16, 1), (3, 2));
    let (b, gb) = net.qlinear_conv("grouped", (&a, &ga), (16, 16, 4), (3, 1));
    net.add("DequantizeLinear", &[&b, &gb.0, &gb.1], "y", vec![]);
    net.float_tail("y");
    let m = net.model(16);
    let (native, transposes, _) = rewritten(&m);
    assert_eq!(
        native,
        ops(&[("ResnextEdgeConv", 2), ("ResnextEdgeQuantizeNhwc", 1)])
    );
    assert_eq!(transposes, 1);
    agree(&m, 1.0);
}

#[test]
fn a_qlinear_add_between_native_convs_stays_nhwc() {
    let mut net = Net::new();
    let (sx, zx) = net.grid("x", STEP, 128);
    net.add("QuantizeLinear", &["input", &sx, &zx], "x_q", vec![]);
    let g0 = (sx, zx);
    let (a, ga) = net.qlinear_conv("stem", ("x_q", &g0), (3, 16, 1), (3, 2));
    let (b, gb) = net.qlinear_conv("block", (&a, &ga), (16, 16, 4), (3, 1));
    let gc = net.grid("sum", STEP, 128);
    let inputs = [&a, &ga.0, &ga.1, &b, &gb.0, &gb.1, &gc.0, &gc.1].map(|s| s.as_str());
    net.add("QLinearAdd", &inputs, "sum", vec![]);
    net.nodes.last_mut().unwrap().domain = "com.microsoft".into();
    net.add("DequantizeLinear", &["sum", &gc.0, &gc.1], "y", vec![]);
    net.float_tail("y");
    let m = net.model(16);
    let (native, transposes, g) = rewritten(&m);
    assert_eq!(
        native,
        ops(&[("ResnextEdgeConv", 2), ("ResnextEdgeQuantizeNhwc", 1)])
    );
    assert!(g.node.iter().any(|n| n.op_type == "QLinearAdd"));
    // The add reads both convolutions' NHWC outputs as they are.
    assert_eq!(transposes, 1);
    agree(&m, 2.0);
}

#[test]
fn a_max_pool_on_one_grid_becomes_native() {
    let mut net = Net::new();
    quantized_input(&mut net);
    net.qdq_conv("stem", "x", (3, 16, 1), (3, 2, 1), true, None);
    let pool = vec![
        new_ints_attr("kernel_shape", vec![3, 3]),
        new_ints_attr("strides", vec![2, 2]),
        new_ints_attr("pads", vec![1; 4]),
    ];
    net.add("MaxPool", &["stem"], "pooled_max", pool);
    let (s, z) = ("stem_s".to_string(), "stem_z".to_string());
    net.add("QuantizeLinear", &["pooled_max", &s, &z], "pool_q", vec![]);
    net.add("DequantizeLinear", &["pool_q", &s, &z], "pool", vec![]);
    net.float_tail("pool");
    let m = net.model(16);
    let (native, transposes, _) = rewritten(&m);
    assert_eq!(
        native,
        ops(&[
            ("ResnextEdgeConv", 1),
            ("ResnextEdgeMaxPool", 1),
            ("ResnextEdgeQuantizeNhwc", 1)
        ])
    );
    assert_eq!(transposes, 1);
    agree(&m, 1.0);
}

#[test]
fn an_int8_classifier_head_becomes_the_native_head() {
    let classes = 10;
    let mut net = Net::new();
    quantized_input(&mut net);
    net.qdq_conv("stem", "x", (3, 16, 1), (3, 2, 1), true, None);
    net.add("GlobalAveragePool", &["stem"], "gap", vec![]);
    net.qdq("gap", "gap_dq", 0);
    net.add(
        "Flatten",
        &["gap_dq"],
        "flat",
        vec![new_int_attr("axis", 1)],
    );
    let [wq, ws, wz] = net.weights("fc", classes, 16, 1);
    // Gemm weights are [classes, features]: the 1x1 kernel's dims dropped.
    net.inits
        .iter_mut()
        .find(|t| t.name == wq)
        .unwrap()
        .dims
        .truncate(2);
    net.add(
        "DequantizeLinear",
        &[&wq, &ws, &wz],
        "fc_w",
        vec![new_int_attr("axis", 0)],
    );
    let bias: Vec<f32> = (0..classes).map(|c| 0.1 * c as f32 - 0.4).collect();
    net.inits.push(f32_tensor("fc_b", &[classes as i64], &bias));
    net.add(
        "Gemm",
        &["flat", "fc_w", "fc_b"],
        "logits",
        vec![new_int_attr("transB", 1)],
    );
    let m = net.model(classes);
    let (native, transposes, g) = rewritten(&m);
    assert_eq!(
        native,
        ops(&[
            ("ResnextEdgeConv", 1),
            ("ResnextEdgeHead", 1),
            ("ResnextEdgeQuantizeNhwc", 1)
        ])
    );
    assert_eq!(transposes, 0, "the head reads NHWC");
    assert!(!g.node.iter().any(|n| n.op_type == "Gemm"));
    agree(&m, 2.0);
}

#[test]
fn float_and_dilated_convolutions_are_left_alone() {
    let mut net = Net::new();
    quantized_input(&mut net);
    // Dilation 2: no native kernel for it.
    net.qdq_conv("dilated", "x", (3, 16, 1), (3, 1, 2), true, None);
    // Float weights: nothing to run in integers.
    let w: Vec<f32> = (0..16 * 16)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.05)
        .collect();
    net.inits.push(f32_tensor("float_w", &[16, 16, 1, 1], &w));
    net.add(
        "Conv",
        &["dilated", "float_w"],
        "float_conv",
        conv_attrs(1, 1, 1),
    );
    net.float_tail("float_conv");
    let m = net.model(16);
    let r = rewrite(m.clone());
    assert_eq!(r.native_ops, 0);
    assert_eq!(r.model, m, "a graph without a pattern comes out unchanged");
    let (diff, size) = native_vs_stock(&m);
    assert!(size > 0.0);
    assert_eq!(diff, 0.0, "the same graph on the same engine");
}

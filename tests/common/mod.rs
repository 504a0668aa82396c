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
use resnext_edge::onnx_build::{f32_tensor, f32_value_info, model, new_int_attr, node};
use std::path::Path;
use std::process::Output;
use tract_onnx::pb;

/// Writes the colour classifier to `path`.
pub fn colour_model(path: &Path) {
    colour_model_edited(path, |_| {});
}

/// Writes the colour classifier to `path` after `edit` (for malformed variants).
pub fn colour_model_edited(path: &Path, edit: impl FnOnce(&mut pb::ModelProto)) {
    let graph = pb::GraphProto {
        name: "colours".into(),
        node: vec![
            node("GlobalAveragePool", &["input"], "pooled", vec![]),
            node(
                "Flatten",
                &["pooled"],
                "flat",
                vec![new_int_attr("axis", 1)],
            ),
            node(
                "Gemm",
                &["flat", "w", "b"],
                "logits",
                vec![new_int_attr("transB", 1)],
            ),
        ],
        initializer: vec![
            f32_tensor("w", &[3, 3], &[4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 4.0]),
            f32_tensor("b", &[3], &[0.0, 0.0, 0.0]),
        ],
        input: vec![f32_value_info(
            "input",
            &[None, Some(3), Some(224), Some(224)],
        )],
        output: vec![f32_value_info("logits", &[None, Some(3)])],
        ..Default::default()
    };
    let mut model = model(
        graph,
        &[("resnext_edge.labels", r#"["red","green","blue"]"#)],
    );
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

/// Writes a small int8 QDQ network to `path`, in the layout the quantizer writes: the input
/// quantized to u8, then a dense 3x3/2 convolution (3 -> 32 channels, ReLU), a grouped 3x3 one
/// (8 groups of 4 channels, ReLU) and a pointwise one (32 -> 32), each `DQ -> Conv -> [Relu] ->
/// Q` with int8 weights per output channel, then a float global average pool as the 32
/// "classes". Weights are deterministic pseudo-random values.
pub fn int8_conv_model(path: &Path) {
    use pb::tensor_proto::DataType;
    use resnext_edge::onnx_build::{new_ints_attr, raw_tensor};
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut nodes = vec![
        node("QuantizeLinear", &["input", "s_in", "z_in"], "x_q", vec![]),
        node("DequantizeLinear", &["x_q", "s_in", "z_in"], "x", vec![]),
    ];
    let mut inits = vec![
        f32_tensor("s_in", &[], &[0.02]),
        raw_tensor("z_in", DataType::Uint8, &[] as &[i64], vec![128]),
    ];
    // (name, input, in channels per group, groups, kernel, stride, relu)
    let layers: [(&str, &str, usize, usize, usize, usize, bool); 3] = [
        ("stem", "x", 3, 1, 3, 2, true),
        ("grouped", "stem_out", 4, 8, 3, 1, true),
        ("pointwise", "grouped_out", 32, 1, 1, 1, false),
    ];
    for (name, input, cin, groups, k, stride, relu) in layers {
        let out_c = 32usize;
        let w: Vec<u8> = (0..out_c * cin * k * k).map(|_| next() as u8).collect();
        let wn = |s: &str| format!("{name}_{s}");
        inits.push(raw_tensor(
            wn("w_q"),
            DataType::Int8,
            [out_c, cin, k, k].map(|d| d as i64).to_vec(),
            w,
        ));
        let scales: Vec<f32> = (0..out_c).map(|o| 0.002 + 0.0001 * o as f32).collect();
        inits.push(f32_tensor(&wn("w_s"), &[out_c as i64], &scales));
        inits.push(raw_tensor(
            wn("w_z"),
            DataType::Int8,
            vec![out_c as i64],
            vec![0; out_c],
        ));
        inits.push(f32_tensor(&wn("b"), &[out_c as i64], &vec![0.01; out_c]));
        inits.push(f32_tensor(&wn("s"), &[], &[0.03]));
        inits.push(raw_tensor(
            wn("z"),
            DataType::Uint8,
            &[] as &[i64],
            vec![if relu { 0 } else { 128 }],
        ));
        let (w_q, w_s, w_z, w_f) = (wn("w_q"), wn("w_s"), wn("w_z"), wn("w"));
        nodes.push(node(
            "DequantizeLinear",
            &[&w_q, &w_s, &w_z],
            &w_f,
            vec![new_int_attr("axis", 0)],
        ));
        let pad = (k / 2) as i64;
        let conv = wn("conv");
        nodes.push(node(
            "Conv",
            &[input, &w_f, &wn("b")],
            &conv,
            vec![
                new_int_attr("group", groups as i64),
                new_ints_attr("kernel_shape", vec![k as i64, k as i64]),
                new_ints_attr("strides", vec![stride as i64; 2]),
                new_ints_attr("pads", vec![pad; 4]),
            ],
        ));
        let act = if relu {
            nodes.push(node("Relu", &[&conv], &wn("relu"), vec![]));
            wn("relu")
        } else {
            conv
        };
        let (s, z, q) = (wn("s"), wn("z"), wn("q"));
        nodes.push(node("QuantizeLinear", &[&act, &s, &z], &q, vec![]));
        nodes.push(node("DequantizeLinear", &[&q, &s, &z], &wn("out"), vec![]));
    }
    nodes.push(node(
        "GlobalAveragePool",
        &["pointwise_out"],
        "pooled",
        vec![],
    ));
    nodes.push(node(
        "Flatten",
        &["pooled"],
        "logits",
        vec![new_int_attr("axis", 1)],
    ));
    let graph = pb::GraphProto {
        name: "int8 convolutions".into(),
        node: nodes,
        initializer: inits,
        input: vec![f32_value_info(
            "input",
            &[None, Some(3), Some(224), Some(224)],
        )],
        output: vec![f32_value_info("logits", &[None, Some(32)])],
        ..Default::default()
    };
    std::fs::write(path, model(graph, &[]).encode_to_vec()).unwrap();
}

//! Every convolution shape of resnext50_32x4d, batch 1, one thread: the native op (the kernels
//! this CPU selects) against stock tract running the same convolution as an ONNX `QLinearConv`.
//!
//! `cargo bench --bench conv_shapes`; names are `<layer>/<native|stock>`.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use resnext_edge::kernels;
use resnext_edge::kernels::conv::{ConvGeometry, PackedConv};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::prelude::*;

/// `(layer, input side, in channels, out channels, groups, kernel, stride)`.
const SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("stem_7x7s2", 224, 3, 64, 1, 7, 2),
    ("layer1.0.conv1_1x1", 56, 64, 128, 1, 1, 1),
    ("layer1.0.conv2_g3x3", 56, 128, 128, 32, 3, 1),
    ("layer1.0.conv3_1x1", 56, 128, 256, 1, 1, 1),
    ("layer2.0.conv2_g3x3s2", 56, 256, 256, 32, 3, 2),
    ("layer2.0.downsample_1x1s2", 56, 256, 512, 1, 1, 2),
    ("layer3.1.conv2_g3x3", 14, 512, 512, 32, 3, 1),
    ("layer4.1.conv2_g3x3", 7, 1024, 1024, 32, 3, 1),
    ("layer4.1.conv3_1x1", 7, 1024, 2048, 1, 1, 1),
];

fn init(name: &str, dt: DataType, dims: &[i64], raw_data: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: dt as i32,
        raw_data,
        ..Default::default()
    }
}

fn ints(name: &str, v: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v,
        ..Default::default()
    }
}

/// The convolution as a one-node `QLinearConv` model on stock tract.
fn stock_plan(g: &ConvGeometry, w: &[i8], bias: &[i32]) -> Arc<TypedRunnableModel> {
    let (k, p, s) = (g.kernel as i64, g.pad as i64, g.stride as i64);
    let oc = g.out_c as i64;
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let node = pb::NodeProto {
        name: "conv".into(),
        op_type: "QLinearConv".into(),
        input: ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"]
            .map(String::from)
            .to_vec(),
        output: vec!["y".into()],
        attribute: vec![
            ints("kernel_shape", vec![k, k]),
            ints("strides", vec![s, s]),
            ints("pads", vec![p; 4]),
            pb::AttributeProto {
                name: "group".into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: g.groups as i64,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        node: vec![node],
        initializer: vec![
            init("xs", DataType::Float, &[], f32s(&[0.02])),
            init("xz", DataType::Uint8, &[], vec![3]),
            init(
                "w",
                DataType::Int8,
                &[oc, (g.cpg_in()) as i64, k, k],
                w.iter().map(|&v| v as u8).collect(),
            ),
            init("ws", DataType::Float, &[oc], f32s(&vec![0.01; g.out_c])),
            init("wz", DataType::Int8, &[oc], vec![0; g.out_c]),
            init("ys", DataType::Float, &[], f32s(&[0.05])),
            init("yz", DataType::Uint8, &[], vec![0]),
            init(
                "b",
                DataType::Int32,
                &[oc],
                bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        ],
        input: vec![pb::ValueInfoProto {
            name: "x".into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: DataType::Uint8 as i32,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }],
        output: vec![pb::ValueInfoProto {
            name: "y".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let proto = resnext_edge::onnx_build::model(graph, &[]);
    tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .unwrap()
        .with_input_fact(0, u8::fact([1, g.in_c, g.in_h, g.in_w]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
}

fn conv_shapes(c: &mut Criterion) {
    let isa = kernels::selected();
    for &(name, side, cin, cout, groups, k, s) in SHAPES {
        let geom = ConvGeometry {
            in_h: side,
            in_w: side,
            in_c: cin,
            out_c: cout,
            groups,
            kernel: k,
            stride: s,
            pad: k / 2,
        };
        let (w, bias, x, requant) = common::operands(&geom);
        let conv = PackedConv::new(geom.clone(), &w, bias.clone(), requant, isa.family());
        let mut out = vec![0u8; conv.out_len()];
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        group.measurement_time(std::time::Duration::from_secs(2));
        group.bench_function("native", |b| {
            b.iter(|| conv.run_threads(isa, &x, None, &mut out, 1))
        });
        let plan = stock_plan(&geom, &w, &bias);
        let input = Tensor::from_shape(&[1, cin, side, side], &x)
            .unwrap()
            .into_tvalue();
        group.bench_function("stock", |b| {
            b.iter(|| plan.run(tvec!(input.clone())).unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, conv_shapes);
criterion_main!(benches);

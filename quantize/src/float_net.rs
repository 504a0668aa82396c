//! The float network: a checkpoint's tensors arranged by the architecture, with every BN folded
//! into the convolution before it (`w' = w * gamma / sqrt(var + eps)`,
//! `b' = beta - mean * gamma / sqrt(var + eps)`, computed in f64), and its ONNX graph.
//!
//! Folding is what every deployment of these models does: the int8 path quantizes the folded
//! weights, and the float graph written here is the reference it is measured against.

use crate::checkpoint::Checkpoint;
use crate::onnx_builder::{Attr, Dim, GraphBuilder};
use resnext_edge::metadata::ModelMetadata;
use resnext_edge::resnext::{ConvShape, ResNeXtConfig};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

/// BatchNorm epsilon of mmcls and torchvision.
pub const BN_EPS: f64 = 1e-5;

/// Input name of every model this project writes.
pub const INPUT: &str = "input";
/// Output name of every model this project writes.
pub const OUTPUT: &str = "logits";

/// A convolution with its BN folded in: `weight` `[out, in / groups, k, k]`, `bias` `[out]`.
#[derive(Clone, Debug)]
pub struct FoldedConv {
    pub shape: ConvShape,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A bottleneck block of folded convolutions.
#[derive(Clone, Debug)]
pub struct FoldedBlock {
    pub name: String,
    pub conv1: FoldedConv,
    pub conv2: FoldedConv,
    pub conv3: FoldedConv,
    pub downsample: Option<FoldedConv>,
}

/// The whole network, BN folded, ready to be written.
#[derive(Clone, Debug)]
pub struct FloatNet {
    pub config: ResNeXtConfig,
    pub stem: FoldedConv,
    pub blocks: Vec<FoldedBlock>,
    /// `[classes, features]`.
    pub fc_weight: Vec<f32>,
    pub fc_bias: Vec<f32>,
}

fn fold(ck: &Checkpoint, shape: &ConvShape) -> FoldedConv {
    // check_tensors has verified presence and shapes; a panic here is a bug, not bad input.
    let t = |suffix: &str, prefix: &str| &ck.tensors[&format!("{prefix}.{suffix}")].data;
    let w = t("weight", &shape.name);
    let (gamma, beta, mean, var) = (
        t("weight", &shape.bn),
        t("bias", &shape.bn),
        t("running_mean", &shape.bn),
        t("running_var", &shape.bn),
    );
    let per_out = w.len() / shape.out_channels;
    let mut weight = Vec::with_capacity(w.len());
    let mut bias = Vec::with_capacity(shape.out_channels);
    for o in 0..shape.out_channels {
        let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
        weight.extend(
            w[o * per_out..(o + 1) * per_out]
                .iter()
                .map(|&v| (v as f64 * scale) as f32),
        );
        bias.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
    }
    FoldedConv {
        shape: shape.clone(),
        weight,
        bias,
    }
}

impl FloatNet {
    /// Folds a checkpoint whose tensors were checked against `config`
    /// ([`crate::infer::check_tensors`]).
    pub fn from_checkpoint(ck: &Checkpoint, config: &ResNeXtConfig) -> Self {
        let blocks = config
            .blocks(224)
            .iter()
            .map(|b| FoldedBlock {
                name: b.name.clone(),
                conv1: fold(ck, &b.conv1),
                conv2: fold(ck, &b.conv2),
                conv3: fold(ck, &b.conv3),
                downsample: b.downsample.as_ref().map(|d| fold(ck, d)),
            })
            .collect();
        FloatNet {
            config: config.clone(),
            stem: fold(ck, &config.stem(224)),
            blocks,
            fc_weight: ck.tensors["fc.weight"].data.clone(),
            fc_bias: ck.tensors["fc.bias"].data.clone(),
        }
    }

    /// Every folded convolution in execution order.
    pub fn convs(&self) -> Vec<&FoldedConv> {
        let mut v = vec![&self.stem];
        for b in &self.blocks {
            v.extend([&b.conv1, &b.conv2, &b.conv3]);
            v.extend(b.downsample.as_ref());
        }
        v
    }

    /// The float ONNX model: input `input` `[N, 3, 224, 224]`, output `logits` `[N, classes]`.
    pub fn to_onnx(&self, metadata: &ModelMetadata) -> pb::ModelProto {
        self.to_onnx_with_points(metadata).0
    }

    /// The float ONNX model and its activation points (the tensors an int8 model quantizes), in
    /// execution order.
    pub fn to_onnx_with_points(&self, metadata: &ModelMetadata) -> (pb::ModelProto, Vec<ActPoint>) {
        let mut e = FloatEmitter::default();
        let model = write_graph(
            self,
            &mut e,
            metadata,
            "ResNeXt classifier, BN folded, float32",
        );
        (model, e.points)
    }
}

/// A tensor that the next layers read and that an int8 model carries in int8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActPoint {
    /// Name of the float tensor in the graph.
    pub name: String,
    /// Known non-negative (after a ReLU or a pooling of such).
    pub nonneg: bool,
    /// Takes the quantization of another point (a max pool keeps its input's grid).
    pub same_as: Option<String>,
}

/// A tensor as the graph writer tracks it: which activation point it is, and the name the
/// consumers read (the point itself for float, its dequantized twin for QDQ).
#[derive(Clone, Debug)]
pub struct Act {
    pub point: String,
    pub read: String,
}

/// How the network's tensors and layers are written: float, QDQ or QOperator. One topology,
/// several encodings. The layer writers default to float ops reading what [`Emitter::activation`]
/// returns, which is the float and the QDQ form; the QOperator form replaces them.
pub trait Emitter {
    /// An activation point was produced; returns the tensor the consumers read.
    fn activation(&mut self, g: &mut GraphBuilder, point: &ActPoint) -> String;
    /// Writes a conv's weight and bias for an input `input`; returns their names.
    fn conv_weights(
        &mut self,
        g: &mut GraphBuilder,
        conv: &FoldedConv,
        input: &Act,
    ) -> (String, String);
    /// Writes the head's weight `[classes, features]` and bias; returns their names.
    fn fc_weights(&mut self, g: &mut GraphBuilder, net: &FloatNet, input: &Act)
        -> (String, String);

    /// The graph input (float) as the first layer reads it.
    fn input(&mut self, g: &mut GraphBuilder) -> Act {
        produce(g, self, point(INPUT, false))
    }

    /// One folded conv (and its ReLU) reading `input`.
    fn conv(&mut self, g: &mut GraphBuilder, c: &FoldedConv, input: &Act, relu: bool) -> Act {
        let s = &c.shape;
        let (w, b) = self.conv_weights(g, c, input);
        let out = g.node(
            "Conv",
            &s.name,
            &[&input.read, &w, &b],
            &[&s.name],
            conv_attrs(s),
        );
        let out = if relu {
            let name = format!("{}.relu", s.name);
            g.node("Relu", &name, &[&out], &[&name], vec![])
        } else {
            out
        };
        produce(g, self, point(&out, relu))
    }

    /// The stem's 3x3/2 max pool (it keeps its input's quantization).
    fn max_pool(&mut self, g: &mut GraphBuilder, input: &Act) -> Act {
        let pooled = g.node(
            "MaxPool",
            "maxpool",
            &[&input.read],
            &["maxpool"],
            max_pool_attrs(),
        );
        produce(
            g,
            self,
            ActPoint {
                name: pooled,
                nonneg: true,
                same_as: Some(input.point.clone()),
            },
        )
    }

    /// `relu(y + identity)`, the end of block `block`.
    fn residual(&mut self, g: &mut GraphBuilder, block: &str, y: &Act, identity: &Act) -> Act {
        let sum = g.node(
            "Add",
            &format!("{block}.add"),
            &[&y.read, &identity.read],
            &[&format!("{block}.add")],
            vec![],
        );
        let out = g.node(
            "Relu",
            &format!("{block}.relu"),
            &[&sum],
            &[&format!("{block}.out")],
            vec![],
        );
        produce(g, self, point(&out, true))
    }

    /// The global average pool before the head.
    fn global_pool(&mut self, g: &mut GraphBuilder, x: &Act) -> Act {
        let pooled = g.node(
            "GlobalAveragePool",
            "avgpool",
            &[&x.read],
            &["avgpool"],
            vec![],
        );
        produce(g, self, point(&pooled, true))
    }

    /// Flatten and the linear head, writing the float logits `OUTPUT`.
    fn head(&mut self, g: &mut GraphBuilder, net: &FloatNet, pooled: &Act) {
        let flat = g.node(
            "Flatten",
            "flatten",
            &[&pooled.read],
            &["flatten"],
            vec![("axis", Attr::Int(1))],
        );
        let (w, b) = self.fc_weights(g, net, pooled);
        g.node(
            "Gemm",
            "fc",
            &[&flat, &w, &b],
            &[OUTPUT],
            vec![("transB", Attr::Int(1))],
        );
    }
}

/// Attributes of a conv node.
pub fn conv_attrs(s: &ConvShape) -> Vec<(&'static str, Attr)> {
    let k = s.kernel as i64;
    let p = s.padding as i64;
    vec![
        ("kernel_shape", Attr::Ints(vec![k, k])),
        ("strides", Attr::Ints(vec![s.stride as i64; 2])),
        ("pads", Attr::Ints(vec![p; 4])),
        ("group", Attr::Int(s.groups as i64)),
    ]
}

/// Attributes of the stem's max pool.
pub fn max_pool_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", Attr::Ints(vec![3, 3])),
        ("strides", Attr::Ints(vec![2, 2])),
        ("pads", Attr::Ints(vec![1, 1, 1, 1])),
    ]
}

/// Plain float32 weights; records the activation points.
#[derive(Default)]
pub struct FloatEmitter {
    pub points: Vec<ActPoint>,
}

impl Emitter for FloatEmitter {
    fn activation(&mut self, _g: &mut GraphBuilder, point: &ActPoint) -> String {
        self.points.push(point.clone());
        point.name.clone()
    }

    fn conv_weights(
        &mut self,
        g: &mut GraphBuilder,
        c: &FoldedConv,
        _input: &Act,
    ) -> (String, String) {
        let s = &c.shape;
        let w = g.f32_tensor(&format!("{}.weight", s.name), &s.weight_shape(), &c.weight);
        let b = g.f32_tensor(&format!("{}.bias", s.name), &[s.out_channels], &c.bias);
        (w, b)
    }

    fn fc_weights(
        &mut self,
        g: &mut GraphBuilder,
        net: &FloatNet,
        _input: &Act,
    ) -> (String, String) {
        let (classes, features) = (net.config.num_classes, net.config.feature_channels());
        let w = g.f32_tensor("fc.weight", &[classes, features], &net.fc_weight);
        let b = g.f32_tensor("fc.bias", &[classes], &net.fc_bias);
        (w, b)
    }
}

/// An activation point with its own quantization.
pub fn point(name: &str, nonneg: bool) -> ActPoint {
    ActPoint {
        name: name.to_string(),
        nonneg,
        same_as: None,
    }
}

/// Announces `p` to the emitter and returns it as the consumers see it.
pub fn produce<E: Emitter + ?Sized>(g: &mut GraphBuilder, e: &mut E, p: ActPoint) -> Act {
    let read = e.activation(g, &p);
    Act {
        point: p.name,
        read,
    }
}

/// Writes the network's graph with `e` choosing how tensors and layers are encoded.
pub fn write_graph(
    net: &FloatNet,
    e: &mut dyn Emitter,
    metadata: &ModelMetadata,
    doc: &str,
) -> pb::ModelProto {
    let crop = metadata.preprocessing.crop as i64;
    let mut g = GraphBuilder::new("resnext");
    g.input(
        INPUT,
        DataType::Float,
        &[
            Dim::Named("N"),
            Dim::Fixed(3),
            Dim::Fixed(crop),
            Dim::Fixed(crop),
        ],
    );
    let input = e.input(&mut g);
    let stem = e.conv(&mut g, &net.stem, &input, true);
    let mut x = e.max_pool(&mut g, &stem);
    for b in &net.blocks {
        let y = e.conv(&mut g, &b.conv1, &x, true);
        let y = e.conv(&mut g, &b.conv2, &y, true);
        let y = e.conv(&mut g, &b.conv3, &y, false);
        let identity = match &b.downsample {
            Some(d) => e.conv(&mut g, d, &x, false),
            None => x.clone(),
        };
        x = e.residual(&mut g, &b.name, &y, &identity);
    }
    let pooled = e.global_pool(&mut g, &x);
    e.head(&mut g, net, &pooled);
    g.output(
        OUTPUT,
        DataType::Float,
        &[Dim::Named("N"), Dim::Fixed(net.config.num_classes as i64)],
    );
    g.finish(metadata.to_props(), doc)
}

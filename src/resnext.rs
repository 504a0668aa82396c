//! The ResNeXt family: one config type for every member, the seed presets, and the parameter and
//! FLOP counts of a config, counted the way mmcv's `get_model_complexity_info` counts them so that
//! they can be compared with published tables.
//!
//! The network is mmclassification's `ResNeXt` with `style='pytorch'` (the stride sits on the 3x3
//! conv): a 7x7/2 stem conv + BN + ReLU + 3x3/2 max pool, four stages of bottleneck blocks, global
//! average pooling and a linear head. Both the quantizer (which builds graphs from it) and the
//! runtime (which reads it back from a model's metadata) use this module.

use serde::{Deserialize, Serialize};

/// Architecture of one ResNeXt network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNeXtConfig {
    /// Nominal depth (50, 101, 152, ...): `2 + 3 * sum(layers)`. Derived from `layers` when absent.
    #[serde(default)]
    pub depth: usize,
    /// Bottleneck blocks per stage.
    pub layers: [usize; 4],
    /// Groups of the 3x3 convolutions (the "cardinality", 32 in `32x4d`).
    pub groups: usize,
    /// Channels per group of the first stage (4 in `32x4d`).
    pub width_per_group: usize,
    /// Planes of the first stage; stage `i` has `base_channels * 2^i` planes.
    pub base_channels: usize,
    /// Output channels of the stem convolution.
    pub stem_channels: usize,
    /// Classes of the linear head.
    pub num_classes: usize,
}

/// A named member of the family, as published with measured accuracy.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub config: ResNeXtConfig,
}

/// Bottleneck expansion: a block's output has `4 * planes` channels.
pub const EXPANSION: usize = 4;

/// One convolution of the network, with what is needed to count it and to name its tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// torchvision-style prefix of the conv's tensors, e.g. `layer1.0.conv2`.
    pub name: String,
    /// torchvision-style prefix of the BN that follows it, e.g. `layer1.0.bn2`.
    pub bn: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    /// Spatial size of the input (square) for a `input_size` x `input_size` image.
    pub in_size: usize,
    /// Spatial size of the output.
    pub out_size: usize,
}

impl ConvShape {
    /// Shape of the weight tensor: `[out, in / groups, k, k]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel,
            self.kernel,
        ]
    }

    /// Multiply-accumulates of one image.
    pub fn macs(&self) -> u64 {
        let per_out = (self.in_channels / self.groups * self.kernel * self.kernel) as u64;
        per_out * (self.out_channels * self.out_size * self.out_size) as u64
    }
}

/// One bottleneck block: three convolutions and, for the first block of a stage, a projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockShape {
    /// `layer{stage+1}.{index}`.
    pub name: String,
    pub conv1: ConvShape,
    pub conv2: ConvShape,
    pub conv3: ConvShape,
    pub downsample: Option<ConvShape>,
}

fn conv_out(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding - kernel) / stride + 1
}

impl ResNeXtConfig {
    /// A config with `depth` derived from `layers`.
    pub fn new(
        layers: [usize; 4],
        groups: usize,
        width_per_group: usize,
        base_channels: usize,
        stem_channels: usize,
        num_classes: usize,
    ) -> Self {
        ResNeXtConfig {
            depth: depth_of(&layers),
            layers,
            groups,
            width_per_group,
            base_channels,
            stem_channels,
            num_classes,
        }
    }

    /// Fills in `depth` when it was left out, and checks that the numbers describe a buildable
    /// network (channels divisible by groups, nothing zero).
    pub fn validated(mut self) -> Result<Self, String> {
        if self.depth == 0 {
            self.depth = depth_of(&self.layers);
        }
        if self.depth != depth_of(&self.layers) {
            return Err(format!(
                "depth {} does not match layers {:?} (which give depth {})",
                self.depth,
                self.layers,
                depth_of(&self.layers)
            ));
        }
        for (name, v) in [
            ("groups", self.groups),
            ("width_per_group", self.width_per_group),
            ("base_channels", self.base_channels),
            ("stem_channels", self.stem_channels),
            ("num_classes", self.num_classes),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.layers.contains(&0) {
            return Err(format!(
                "every stage needs at least one block, got layers {:?}",
                self.layers
            ));
        }
        for stage in 0..4 {
            let planes = self.base_channels << stage;
            let mid = self.mid_channels(stage);
            if mid == 0
                || !mid.is_multiple_of(self.groups)
                || !(self.groups * self.width_per_group * planes).is_multiple_of(self.base_channels)
            {
                return Err(format!(
                    "stage {} has {} bottleneck channels, which {} groups do not divide",
                    stage + 1,
                    mid,
                    self.groups
                ));
            }
        }
        Ok(self)
    }

    /// Channels of the grouped 3x3 convolution of stage `stage` (0-based):
    /// `groups * width_per_group * planes / base_channels`.
    pub fn mid_channels(&self, stage: usize) -> usize {
        let planes = self.base_channels << stage;
        if self.groups == 1 {
            planes
        } else {
            self.groups * self.width_per_group * planes / self.base_channels
        }
    }

    /// Channels entering the head.
    pub fn feature_channels(&self) -> usize {
        EXPANSION * (self.base_channels << 3)
    }

    /// The stem convolution for an `input_size` image.
    pub fn stem(&self, input_size: usize) -> ConvShape {
        ConvShape {
            name: "conv1".into(),
            bn: "bn1".into(),
            in_channels: 3,
            out_channels: self.stem_channels,
            kernel: 7,
            stride: 2,
            padding: 3,
            groups: 1,
            in_size: input_size,
            out_size: conv_out(input_size, 7, 2, 3),
        }
    }

    /// Spatial size after the stem's max pool.
    pub fn pooled_stem_size(&self, input_size: usize) -> usize {
        conv_out(self.stem(input_size).out_size, 3, 2, 1)
    }

    /// Every bottleneck block in execution order, for an `input_size` image.
    pub fn blocks(&self, input_size: usize) -> Vec<BlockShape> {
        let mut size = self.pooled_stem_size(input_size);
        let mut inp = self.stem_channels;
        let mut out = Vec::new();
        for (stage, &n) in self.layers.iter().enumerate() {
            let planes = self.base_channels << stage;
            let mid = self.mid_channels(stage);
            let width = EXPANSION * planes;
            for j in 0..n {
                let stride = if j == 0 && stage > 0 { 2 } else { 1 };
                let name = format!("layer{}.{}", stage + 1, j);
                let out_size = conv_out(size, 3, stride, 1);
                let conv = |idx: usize,
                            i: usize,
                            o: usize,
                            k: usize,
                            s: usize,
                            p: usize,
                            g: usize,
                            ins: usize| ConvShape {
                    name: format!("{name}.conv{idx}"),
                    bn: format!("{name}.bn{idx}"),
                    in_channels: i,
                    out_channels: o,
                    kernel: k,
                    stride: s,
                    padding: p,
                    groups: g,
                    in_size: ins,
                    out_size: conv_out(ins, k, s, p),
                };
                let downsample = (j == 0 && (stride != 1 || inp != width)).then(|| ConvShape {
                    name: format!("{name}.downsample.0"),
                    bn: format!("{name}.downsample.1"),
                    in_channels: inp,
                    out_channels: width,
                    kernel: 1,
                    stride,
                    padding: 0,
                    groups: 1,
                    in_size: size,
                    out_size,
                });
                out.push(BlockShape {
                    name: name.clone(),
                    conv1: conv(1, inp, mid, 1, 1, 0, 1, size),
                    conv2: conv(2, mid, mid, 3, stride, 1, self.groups, size),
                    conv3: conv(3, mid, width, 1, 1, 0, 1, out_size),
                    downsample,
                });
                inp = width;
                size = out_size;
            }
        }
        out
    }

    /// Every convolution, in execution order (stem first; in a block: conv1, conv2, conv3, then
    /// the projection).
    pub fn convs(&self, input_size: usize) -> Vec<ConvShape> {
        let mut all = vec![self.stem(input_size)];
        for b in self.blocks(input_size) {
            all.extend([b.conv1, b.conv2, b.conv3]);
            all.extend(b.downsample);
        }
        all
    }

    /// Learnable parameters, as `sum(p.numel() for p in model.parameters())` counts them: conv
    /// weights, BN weight and bias (running statistics are buffers), and the head.
    pub fn params(&self) -> u64 {
        let convs: u64 = self
            .convs(224)
            .iter()
            .map(|c| {
                let [o, i, k, _] = c.weight_shape();
                (o * i * k * k + 2 * o) as u64
            })
            .sum();
        let fc = (self.feature_channels() * self.num_classes + self.num_classes) as u64;
        convs + fc
    }

    /// FLOPs of one `input_size` image, as mmcv counts them: conv and linear multiply-accumulates
    /// (the linear bias adds one per output), two per input element of each BN, one per element of
    /// each ReLU call, one per input element of each pooling layer.
    pub fn flops(&self, input_size: usize) -> u64 {
        self.flop_breakdown(input_size).total()
    }

    /// The terms of [`flops`](Self::flops), for reports.
    pub fn flop_breakdown(&self, input_size: usize) -> FlopBreakdown {
        let mut f = FlopBreakdown::default();
        let stem = self.stem(input_size);
        let elems = |c: &ConvShape| (c.out_channels * c.out_size * c.out_size) as u64;
        f.conv += stem.macs();
        f.bn += 2 * elems(&stem);
        f.relu += elems(&stem);
        f.pool += elems(&stem);
        for b in self.blocks(input_size) {
            for c in [&b.conv1, &b.conv2, &b.conv3] {
                f.conv += c.macs();
                f.bn += 2 * elems(c);
            }
            // ReLU after bn1, after bn2, and after the residual add.
            f.relu += elems(&b.conv1) + elems(&b.conv2) + elems(&b.conv3);
            if let Some(d) = &b.downsample {
                f.conv += d.macs();
                f.bn += 2 * elems(d);
            }
        }
        let last = self
            .blocks(input_size)
            .pop()
            .expect("four non-empty stages");
        f.pool += elems(&last.conv3);
        f.fc = (self.feature_channels() * self.num_classes + self.num_classes) as u64;
        f
    }
}

/// FLOPs by kind of layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlopBreakdown {
    pub conv: u64,
    pub fc: u64,
    pub bn: u64,
    pub relu: u64,
    pub pool: u64,
}

impl FlopBreakdown {
    pub fn total(&self) -> u64 {
        self.conv + self.fc + self.bn + self.relu + self.pool
    }
}

/// Nominal depth of a bottleneck ResNeXt: three convs per block, plus the stem and the head.
pub fn depth_of(layers: &[usize; 4]) -> usize {
    2 + 3 * layers.iter().sum::<usize>()
}

/// Blocks per stage for the standard depths.
pub fn layers_for_depth(depth: usize) -> Option<[usize; 4]> {
    match depth {
        50 => Some([3, 4, 6, 3]),
        101 => Some([3, 4, 23, 3]),
        152 => Some([3, 8, 36, 3]),
        _ => None,
    }
}

/// The seed table: the four ImageNet models published by mmclassification.
pub fn presets() -> Vec<Preset> {
    let p = |name, depth, groups, width| Preset {
        name,
        config: ResNeXtConfig::new(
            layers_for_depth(depth).expect("standard depth"),
            groups,
            width,
            64,
            64,
            1000,
        ),
    };
    vec![
        p("resnext50_32x4d", 50, 32, 4),
        p("resnext101_32x4d", 101, 32, 4),
        p("resnext101_32x8d", 101, 32, 8),
        p("resnext152_32x4d", 152, 32, 4),
    ]
}

/// A preset by name (case-insensitive; `-` and `_` alike).
pub fn preset(name: &str) -> Option<Preset> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    presets().into_iter().find(|p| norm(p.name) == norm(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnext50_flops_split_as_mmcv_reports() {
        let f = preset("resnext50_32x4d")
            .unwrap()
            .config
            .flop_breakdown(224);
        // mmcv's per-kind figures for resnext50_32x4d, in GFLOPs to four places.
        let g = |v: u64| (v as f64 / 1e9 * 1e4).round() / 1e4;
        assert_eq!(g(f.conv), 4.2284);
        assert_eq!(g(f.fc), 0.0020);
        assert_eq!(g(f.bn), 0.0288);
        assert_eq!(g(f.relu), 0.0129);
        assert_eq!(g(f.pool), 0.0009);
    }

    #[test]
    fn torchvision_parameter_count_of_resnext50() {
        // torchvision.models.resnext50_32x4d(): sum(p.numel() for p in m.parameters())
        assert_eq!(
            preset("resnext50_32x4d").unwrap().config.params(),
            25_028_904
        );
    }

    #[test]
    fn depth_is_derived_and_checked() {
        let c = ResNeXtConfig {
            depth: 0,
            ..preset("resnext101_32x8d").unwrap().config
        };
        assert_eq!(c.validated().unwrap().depth, 101);
        let bad = ResNeXtConfig {
            depth: 50,
            ..preset("resnext101_32x8d").unwrap().config
        };
        assert!(bad.validated().unwrap_err().contains("depth 50"));
        let odd_groups = ResNeXtConfig {
            groups: 3,
            ..preset("resnext50_32x4d").unwrap().config
        };
        assert!(
            odd_groups.validated().is_ok(),
            "3 groups of 4 divide 12 channels"
        );
        let zero = ResNeXtConfig {
            num_classes: 0,
            ..preset("resnext50_32x4d").unwrap().config
        };
        assert!(zero.validated().unwrap_err().contains("num_classes"));
    }

    #[test]
    fn block_shapes_follow_the_pytorch_style() {
        let c = preset("resnext50_32x4d").unwrap().config;
        let blocks = c.blocks(224);
        assert_eq!(blocks.len(), 16);
        let b = &blocks[3]; // layer2.0: stride on the 3x3, projection with stride 2
        assert_eq!(b.name, "layer2.0");
        assert_eq!((b.conv1.stride, b.conv2.stride, b.conv2.groups), (1, 2, 32));
        assert_eq!(b.conv2.weight_shape(), [256, 8, 3, 3]);
        assert_eq!(b.downsample.as_ref().unwrap().out_size, 28);
        assert_eq!(blocks[15].conv3.out_size, 7);
    }
}

//! A convolution packed once, at load ([`PackedConv`]): its weights in the layout of a kernel
//! family (panels of outputs for the dot kernels, blocks of 16 outputs for the direct kernels)
//! and the bias less the input zero point's share.

use super::geometry::ConvGeometry;
use super::requant_pass::LayerRequant;
use crate::aligned::Aligned;
use crate::{Family, PANEL};

/// A convolution ready to run: geometry, packed weights, bias, requantization.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConv {
    pub geom: ConvGeometry,
    pub packed: PackedWeights,
    pub bias: Vec<i32>,
    pub requant: LayerRequant,
}

/// Weights packed for one kernel family.
#[derive(Clone, Debug, PartialEq)]
pub enum PackedWeights {
    /// Per group, in panels of [`PANEL`] outputs (`width` of them, see [`crate`]):
    /// `[depth_padded / 2][width][2]` i16.
    I16(Aligned<i16>),
    /// Per group, in panels of [`PANEL`] outputs: `[depth_bytes / 4][width][4]` i8, and the bias less
    /// `in_zero * sum(weights)` of each output channel (the patch carries `x`, not `x - in_zero`);
    /// for a convolution the [`DirectU8`] kernels take, also the weights in their layout,
    /// in blocks of 16 outputs (`DirectShape::weight_at`; input channels padded to 4 with zeros).
    U8 {
        w: Aligned<i8>,
        bias: Vec<i32>,
        direct: Option<Aligned<i8>>,
    },
}

impl PackedConv {
    /// Packs ONNX-ordered weights `[out_c][cpg_in][k][k]` (int8) for a kernel `family`.
    pub fn new(
        geom: ConvGeometry,
        w: &[i8],
        bias: Vec<i32>,
        requant: LayerRequant,
        family: Family,
    ) -> Self {
        assert_eq!(requant.multiplier.len(), geom.out_c);
        let packed = PackedWeights::pack(&geom, w, &bias, requant.in_zero, family);
        PackedConv {
            geom,
            packed,
            bias,
            requant,
        }
    }

    /// A convolution of weights packed before (for `geom`'s channels and window; the input size
    /// does not enter the layout), or why they do not fit it.
    pub fn from_packed(
        geom: ConvGeometry,
        packed: PackedWeights,
        bias: Vec<i32>,
        requant: LayerRequant,
    ) -> Result<Self, String> {
        if bias.len() != geom.out_c || requant.multiplier.len() != geom.out_c {
            return Err(format!(
                "{} biases and {} multipliers for {} output channels",
                bias.len(),
                requant.multiplier.len(),
                geom.out_c
            ));
        }
        if !packed.fits(&geom) {
            return Err(format!(
                "packed weights do not fit {} -> {} channels in {} groups, kernel {}",
                geom.in_c, geom.out_c, geom.groups, geom.kernel
            ));
        }
        Ok(PackedConv {
            geom,
            packed,
            bias,
            requant,
        })
    }
}

impl PackedWeights {
    /// ONNX-ordered weights `[out_c][cpg_in][k][k]` (int8) in the layout of `family`, with the
    /// u8 family's bias less `in_zero * sum(weights)` of each output channel. Only `geom`'s
    /// channels, groups and kernel enter the layout, not the input size.
    pub fn pack(geom: &ConvGeometry, w: &[i8], bias: &[i32], in_zero: i32, family: Family) -> Self {
        let (k, cin, cout) = (geom.kernel, geom.cpg_in(), geom.cpg_out());
        assert_eq!(w.len(), geom.out_c * cin * k * k);
        assert_eq!(bias.len(), geom.out_c);
        // Calls `f(output channel, depth index, weight)`; depth is tap-major and channel-minor,
        // as the patch is gathered.
        let each = |f: &mut dyn FnMut(usize, usize, i8)| {
            for oc in 0..geom.out_c {
                for ky in 0..k {
                    for kx in 0..k {
                        for c in 0..cin {
                            let d = (ky * k + kx) * cin + c;
                            f(oc, d, w[((oc * cin + c) * k + ky) * k + kx]);
                        }
                    }
                }
            }
        };
        // Where output `oc`'s weight at depth `d` goes in a layout of `lanes` depth values per
        // unit (2: i16 pairs, 4: u8 quads) and `depth` values per output: group, panel, unit,
        // output within the panel, lane.
        let at = |oc: usize, d: usize, lanes: usize, depth: usize| {
            let (g, o) = (oc / cout, oc % cout);
            let (o0, width) = (o / PANEL * PANEL, PANEL.min(cout - o / PANEL * PANEL));
            g * depth * cout + o0 * depth + (d / lanes * width + o - o0) * lanes + d % lanes
        };
        match family {
            Family::I16Pairs => {
                let dp = geom.depth_padded();
                let mut p = Aligned::new(geom.groups * dp * cout);
                each(&mut |oc, d, v| p[at(oc, d, 2, dp)] = v as i16);
                PackedWeights::I16(p)
            }
            Family::U8Quads => {
                let dq = geom.depth_bytes();
                let mut p = Aligned::new(geom.groups * dq * cout);
                let mut adjusted = bias.to_vec();
                each(&mut |oc, d, v| {
                    p[at(oc, d, 4, dq)] = v;
                    adjusted[oc] -= in_zero * v as i32;
                });
                let direct = geom.direct_shape().map(|ds| {
                    let mut d = Aligned::new(ds.weights().expect("checked geometry"));
                    each(&mut |oc, depth, v| {
                        let (tap, c) = (depth / cin, depth % cin);
                        d[ds.weight_at(tap, c / 4, oc) + c % 4] = v;
                    });
                    d
                });
                PackedWeights::U8 {
                    w: p,
                    bias: adjusted,
                    direct,
                }
            }
        }
    }

    /// Whether the packed weights hold what a convolution of `geom` reads, in their family's
    /// layout.
    pub fn fits(&self, geom: &ConvGeometry) -> bool {
        match self {
            PackedWeights::I16(w) => w.len() == geom.groups * geom.depth_padded() * geom.cpg_out(),
            PackedWeights::U8 { w, bias, direct } => {
                w.len() == geom.groups * geom.depth_bytes() * geom.cpg_out()
                    && bias.len() == geom.out_c
                    && match (direct, geom.direct_shape()) {
                        (None, None) => true,
                        (Some(d), Some(ds)) => ds.weights() == Some(d.len()),
                        _ => false,
                    }
            }
        }
    }
}

//! A convolution packed once, at load ([`PackedConv`]): its weights in the layout of a kernel
//! family (panels of outputs for the dot kernels, blocks of 16 outputs for the direct kernels)
//! and the bias less the input zero point's share.

use super::geometry::ConvGeometry;
use super::requant_pass::LayerRequant;
use crate::aligned::Aligned;
use crate::requant::{self, LayerWeightSums};
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
        /// Each output channel's sum of weights (see [`crate::requant::WeightSums`]).
        weight_sums: LayerWeightSums,
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

/// Where output `oc`'s weights go in a layout of `lanes` depth values per unit and `depth` values
/// per output (per group, per panel of [`PANEL`] outputs, per unit, the panel's outputs side by
/// side, then the lanes): the index of its depth 0, and the step from a unit to the next.
fn placement(oc: usize, cout: usize, lanes: usize, depth: usize) -> (usize, usize) {
    let (g, o) = (oc / cout, oc % cout);
    let o0 = o / PANEL * PANEL;
    let width = PANEL.min(cout - o0);
    (
        g * depth * cout + o0 * depth + (o - o0) * lanes,
        width * lanes,
    )
}

impl PackedWeights {
    /// ONNX-ordered weights `[out_c][cpg_in][k][k]` (int8) in the layout of `family`, with the
    /// u8 family's bias less `in_zero * sum(weights)` of each output channel. Only `geom`'s
    /// channels, groups and kernel enter the layout, not the input size.
    pub fn pack(geom: &ConvGeometry, w: &[i8], bias: &[i32], in_zero: i32, family: Family) -> Self {
        let (k, cin, cout) = (geom.kernel, geom.cpg_in(), geom.cpg_out());
        assert_eq!(w.len(), geom.out_c * cin * k * k);
        assert_eq!(bias.len(), geom.out_c);
        let (kk, out_c, depth) = (k * k, geom.out_c, geom.depth());
        // One output channel's weights in depth order (tap-major, channel-minor, as the patch is
        // gathered: depth `d = tap * cin + c`), zero past `depth` up to the padded depths.
        let mut t = vec![0i8; geom.depth_padded().max(geom.depth_bytes())];
        let in_depth_order = |t: &mut [i8], src: &[i8]| {
            for (c, taps) in src.chunks_exact(kk).enumerate() {
                for (tap, &v) in taps.iter().enumerate() {
                    t[tap * cin + c] = v;
                }
            }
        };
        match family {
            Family::I16Pairs => {
                let dp = geom.depth_padded();
                let mut p = Aligned::new(geom.groups * dp * cout);
                for (oc, src) in w.chunks_exact(cin * kk).enumerate() {
                    in_depth_order(&mut t, src);
                    let (base, step) = placement(oc, cout, 2, dp);
                    for (u, pair) in t[..dp].chunks_exact(2).enumerate() {
                        let at = base + u * step;
                        p[at] = pair[0] as i16;
                        p[at + 1] = pair[1] as i16;
                    }
                }
                PackedWeights::I16(p)
            }
            Family::U8Quads => {
                let dq = geom.depth_bytes();
                let mut p = Aligned::new(geom.groups * dq * cout);
                let mut adjusted = bias.to_vec();
                let mut weight_sums = vec![0; out_c];
                let (mut has_min, mut narrow) = (false, true);
                let shape = geom.direct_shape();
                let mut direct =
                    shape.map(|ds| Aligned::new(ds.weights().expect("checked geometry")));
                for (oc, src) in w.chunks_exact(cin * kk).enumerate() {
                    // A pointwise convolution's weights are in depth order already.
                    let ordered: &[i8] = if kk == 1 && depth == dq {
                        src
                    } else {
                        in_depth_order(&mut t, src);
                        &t[..dq]
                    };
                    let (base, step) = placement(oc, cout, 4, dq);
                    for (u, quad) in ordered.as_chunks::<4>().0.iter().enumerate() {
                        let at = base + u * step;
                        p[at..at + 4].copy_from_slice(quad);
                    }
                    // The sums (all, positive) and the least weight in one pass.
                    let (mut sum, mut pos, mut least) = (0i32, 0i32, 0i8);
                    for &v in &ordered[..depth] {
                        sum += v as i32;
                        pos += v.max(0) as i32;
                        least = least.min(v);
                    }
                    adjusted[oc] -= in_zero * sum;
                    weight_sums[oc] = sum;
                    has_min |= least == i8::MIN;
                    narrow &=
                        requant::narrow_accumulator(pos as i64, (sum - pos) as i64, adjusted[oc]);
                    // The direct layout (`DirectShape::weight_at`): blocks of 16 outputs; per tap
                    // and input quad, `width` outputs of 4 bytes (channels past `cin` zero).
                    if let (Some(ds), Some(dw)) = (&shape, direct.as_mut()) {
                        let b0 = oc / 16 * 16;
                        let step = 16.min(out_c - b0) * 4;
                        let base = b0 * kk * ds.cin + (oc - b0) * 4;
                        let quads = ds.cin / 4;
                        for tap in 0..kk {
                            let channels = &ordered[tap * cin..(tap + 1) * cin];
                            for (q, quad) in channels.chunks(4).enumerate() {
                                dw[base + (tap * quads + q) * step..][..quad.len()]
                                    .copy_from_slice(quad);
                            }
                        }
                    }
                }
                PackedWeights::U8 {
                    w: p,
                    bias: adjusted,
                    weight_sums: LayerWeightSums {
                        sums: weight_sums,
                        has_min,
                        narrow,
                    },
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
            PackedWeights::U8 {
                w,
                bias,
                weight_sums,
                direct,
            } => {
                w.len() == geom.groups * geom.depth_bytes() * geom.cpg_out()
                    && bias.len() == geom.out_c
                    && weight_sums.sums.len() == geom.out_c
                    && match (direct, geom.direct_shape()) {
                        (None, None) => true,
                        (Some(d), Some(ds)) => ds.weights() == Some(d.len()),
                        _ => false,
                    }
            }
        }
    }
}

//! The native int8 convolution: NHWC u8 activations (batch 1), int8 weights packed once per
//! group as `[depth / 2][out channels of the group][2]` i16, int32 bias, and requantization
//! (per-channel scale, zero point, ReLU clamp, optional residual input) fused into the pass
//! that writes the output. One code path for every shape of a ResNeXt: the 7x7/2 stem, grouped
//! 3x3 (stride 1 and 2) and pointwise 1x1 (stride 1 and 2).
//!
//! For each output pixel and group, the input patch (taps x channels of the group, minus the
//! input zero point, zero where the window leaves the image) is gathered as i16 and handed to the
//! dispatched `dot_i16` kernel in blocks of [`MAX_ROWS`] pixels (row-major over the output).

use crate::kernels::{DotI16, MAX_ROWS};

/// Shape of a 2-D convolution on one NHWC image.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub groups: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad - self.kernel) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad - self.kernel) / self.stride + 1
    }
    pub fn cpg_in(&self) -> usize {
        self.in_c / self.groups
    }
    pub fn cpg_out(&self) -> usize {
        self.out_c / self.groups
    }
    /// Taps x input channels of one group.
    pub fn depth(&self) -> usize {
        self.kernel * self.kernel * self.cpg_in()
    }
    /// [`Self::depth`] rounded up to the kernels' pair width.
    pub fn depth_padded(&self) -> usize {
        self.depth().div_ceil(2) * 2
    }
    /// Multiply-accumulates of one image.
    pub fn macs(&self) -> usize {
        self.out_h() * self.out_w() * self.out_c * self.depth()
    }
    /// Consistent and non-degenerate.
    pub fn check(&self) -> Result<(), String> {
        if self.groups == 0 || self.in_c % self.groups != 0 || self.out_c % self.groups != 0 {
            return Err(format!(
                "{} groups do not divide {} -> {} channels",
                self.groups, self.in_c, self.out_c
            ));
        }
        if self.kernel == 0
            || self.stride == 0
            || self.in_h + 2 * self.pad < self.kernel
            || self.in_w + 2 * self.pad < self.kernel
        {
            return Err(format!(
                "kernel {} stride {} pad {} on {}x{}",
                self.kernel, self.stride, self.pad, self.in_h, self.in_w
            ));
        }
        Ok(())
    }
}

/// The requantization of an output channel's i32 accumulator `acc` (bias included):
/// `v = acc as f32 * multiplier[o]`, plus `(residual - residual_zero) as f32 * residual_multiplier`
/// when there is a residual input, then `round_half_even(v) + out_zero` clamped to `[lo, hi]`
/// (`lo = out_zero` is a fused ReLU). Plain f32 multiplies and adds in this order (no fused
/// multiply-add), so that every ISA computes the same bits.
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    pub in_zero: i32,
    pub multiplier: Vec<f32>,
    pub out_zero: i32,
    pub lo: i32,
    pub hi: i32,
    pub residual: Option<(i32, f32)>,
}

impl Requant {
    #[inline]
    pub fn apply(&self, o: usize, acc: i32, residual: Option<u8>) -> u8 {
        let mut v = acc as f32 * self.multiplier[o];
        if let (Some((zero, m)), Some(r)) = (self.residual, residual) {
            v += (r as i32 - zero) as f32 * m;
        }
        (round_half_even(v) + self.out_zero).clamp(self.lo, self.hi) as u8
    }
}

/// `x.round_ties_even() as i32` for the values a requantization can keep (anything beyond
/// +-2^22 saturates anyway): with `x` clamped to that range, adding and subtracting 1.5 * 2^23
/// leaves the nearest integer, ties to even, in plain f32 arithmetic that every ISA (and its
/// vector unit) computes identically, where `roundf`-style calls are slow on baseline x86_64.
#[inline]
pub fn round_half_even(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    const LIMIT: f32 = 4_194_304.0; // 2^22
    let x = x.clamp(-LIMIT, LIMIT);
    ((x + MAGIC) - MAGIC) as i32
}

/// A convolution ready to run: geometry, packed weights, bias, requantization.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConv {
    pub geom: ConvGeometry,
    /// Per group: `[depth_padded / 2][cpg_out][2]` i16.
    pub weights: Vec<i16>,
    pub bias: Vec<i32>,
    pub requant: Requant,
}

impl PackedConv {
    /// Packs ONNX-ordered weights `[out_c][cpg_in][k][k]` (int8).
    pub fn new(geom: ConvGeometry, w: &[i8], bias: Vec<i32>, requant: Requant) -> Self {
        let (k, cin, cout, dp) = (
            geom.kernel,
            geom.cpg_in(),
            geom.cpg_out(),
            geom.depth_padded(),
        );
        assert_eq!(w.len(), geom.out_c * cin * k * k);
        assert_eq!(bias.len(), geom.out_c);
        assert_eq!(requant.multiplier.len(), geom.out_c);
        let mut weights = vec![0i16; geom.groups * dp * cout];
        for g in 0..geom.groups {
            let base = g * dp * cout;
            for o in 0..cout {
                let oc = g * cout + o;
                for ky in 0..k {
                    for kx in 0..k {
                        for c in 0..cin {
                            // Depth index: tap-major, channel-minor, as the patch is gathered.
                            let d = (ky * k + kx) * cin + c;
                            let src = ((oc * cin + c) * k + ky) * k + kx;
                            weights[base + (d / 2 * cout + o) * 2 + d % 2] = w[src] as i16;
                        }
                    }
                }
            }
        }
        PackedConv {
            geom,
            weights,
            bias,
            requant,
        }
    }

    /// Output length of one image.
    pub fn out_len(&self) -> usize {
        self.geom.out_h() * self.geom.out_w() * self.geom.out_c
    }

    /// Runs on `x` (`[in_h][in_w][in_c]` u8), writing `out` (`[out_h][out_w][out_c]`), with the
    /// residual input (shaped as `out`) if the requantization has one.
    pub fn run(&self, dot: DotI16, x: &[u8], residual: Option<&[u8]>, out: &mut [u8]) {
        let g = &self.geom;
        let (oh, ow, k, s, p) = (g.out_h(), g.out_w(), g.kernel, g.stride, g.pad);
        let (cin, cout, dp) = (g.cpg_in(), g.cpg_out(), g.depth_padded());
        assert_eq!(x.len(), g.in_h * g.in_w * g.in_c);
        assert_eq!(out.len(), self.out_len());
        assert_eq!(residual.is_some(), self.requant.residual.is_some());
        if let Some(r) = residual {
            assert_eq!(r.len(), out.len());
        }
        let zx = self.requant.in_zero as i16;
        let mut patch = vec![0i16; MAX_ROWS * dp];
        let mut acc = vec![0i32; MAX_ROWS * cout];
        let pixels = oh * ow;
        let mut p0 = 0;
        while p0 < pixels {
            let rows = MAX_ROWS.min(pixels - p0);
            {
                for grp in 0..g.groups {
                    for r in 0..rows {
                        let (oy, ox) = ((p0 + r) / ow, (p0 + r) % ow);
                        let row = &mut patch[r * dp..(r + 1) * dp];
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            for kx in 0..k {
                                let ix = (ox * s + kx) as isize - p as isize;
                                let dst = &mut row[(ky * k + kx) * cin..(ky * k + kx + 1) * cin];
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    dst.fill(0);
                                } else {
                                    let at =
                                        (iy as usize * g.in_w + ix as usize) * g.in_c + grp * cin;
                                    for (d, &v) in dst.iter_mut().zip(&x[at..at + cin]) {
                                        *d = v as i16 - zx;
                                    }
                                }
                            }
                        }
                        row[g.depth()..].fill(0);
                        acc[r * cout..(r + 1) * cout]
                            .copy_from_slice(&self.bias[grp * cout..(grp + 1) * cout]);
                    }
                    let w = &self.weights[grp * dp * cout..(grp + 1) * dp * cout];
                    dot(rows, &patch, dp, w, cout, &mut acc);
                    for r in 0..rows {
                        let at = (p0 + r) * g.out_c + grp * cout;
                        for o in 0..cout {
                            let res = residual.map(|rv| rv[at + o]);
                            out[at + o] =
                                self.requant.apply(grp * cout + o, acc[r * cout + o], res);
                        }
                    }
                }
            }
            p0 += rows;
        }
    }
}

/// Max pool on NHWC u8 (`kernel`, `stride`, symmetric `pad`); padded positions do not count.
pub fn max_pool_nhwc(
    x: &[u8],
    (h, w, c): (usize, usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
    out: &mut [u8],
) {
    let oh = (h + 2 * pad - kernel) / stride + 1;
    let ow = (w + 2 * pad - kernel) / stride + 1;
    assert_eq!(out.len(), oh * ow * c);
    for oy in 0..oh {
        for ox in 0..ow {
            let dst = &mut out[(oy * ow + ox) * c..(oy * ow + ox + 1) * c];
            dst.fill(0);
            for ky in 0..kernel {
                let iy = (oy * stride + ky) as isize - pad as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..kernel {
                    let ix = (ox * stride + kx) as isize - pad as isize;
                    if ix < 0 || ix >= w as isize {
                        continue;
                    }
                    let at = (iy as usize * w + ix as usize) * c;
                    for (d, &v) in dst.iter_mut().zip(&x[at..at + c]) {
                        *d = (*d).max(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The native convolution against a direct evaluation of the definition, and every kernel
    //! this CPU has against the generic one, bit for bit, on random shapes. Outputs start as a
    //! canary byte so that an output the code never writes shows up.
    use super::*;
    use crate::kernels::Isa;
    use proptest::prelude::*;

    const CANARY: u8 = 0xA5;

    /// The convolution as the ONNX definition reads, with the requantization of [`Requant`].
    fn reference(c: &PackedConv, w: &[i8], x: &[u8], residual: Option<&[u8]>) -> Vec<u8> {
        let g = &c.geom;
        let (cin, cout, k) = (g.cpg_in(), g.cpg_out(), g.kernel);
        let mut out = vec![0u8; c.out_len()];
        for oy in 0..g.out_h() {
            for ox in 0..g.out_w() {
                for oc in 0..g.out_c {
                    let grp = oc / cout;
                    let mut acc = c.bias[oc];
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize
                                {
                                    continue;
                                }
                                let xv = x
                                    [(iy as usize * g.in_w + ix as usize) * g.in_c + grp * cin + ci]
                                    as i32;
                                let wv = w[((oc * cin + ci) * k + ky) * k + kx] as i32;
                                acc += (xv - c.requant.in_zero) * wv;
                            }
                        }
                    }
                    let at = (oy * g.out_w() + ox) * g.out_c + oc;
                    out[at] = c.requant.apply(oc, acc, residual.map(|r| r[at]));
                }
            }
        }
        out
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[derive(Debug, Clone)]
    struct Case {
        geom: ConvGeometry,
        relu: bool,
        residual: bool,
        seed: u64,
    }

    fn cases() -> impl Strategy<Value = Case> {
        (
            1usize..=12, // groups
            1usize..=9,  // channels per group in
            1usize..=20, // channels per group out (around 4, 8, 16)
            prop::sample::select(vec![1usize, 3, 7]),
            1usize..=2,  // stride
            1usize..=11, // height
            1usize..=11, // width
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_filter_map(
                "kernel larger than the padded image",
                |(groups, ci, co, k, s, h, w, relu, residual, seed)| {
                    let geom = ConvGeometry {
                        in_h: h,
                        in_w: w,
                        in_c: groups * ci,
                        out_c: groups * co,
                        groups,
                        kernel: k,
                        stride: s,
                        pad: k / 2,
                    };
                    geom.check().ok().map(|_| Case {
                        geom,
                        relu,
                        residual,
                        seed,
                    })
                },
            )
    }

    fn build(case: &Case) -> (PackedConv, Vec<i8>, Vec<u8>, Option<Vec<u8>>) {
        let g = case.geom.clone();
        let w: Vec<i8> = bytes(g.out_c * g.cpg_in() * g.kernel * g.kernel, case.seed)
            .into_iter()
            .map(|b| (b as i8).max(-127))
            .collect();
        let x = bytes(g.in_h * g.in_w * g.in_c, case.seed ^ 1);
        let bias: Vec<i32> = bytes(g.out_c, case.seed ^ 2)
            .iter()
            .map(|&b| (b as i32 - 128) * 37)
            .collect();
        let multiplier: Vec<f32> = bytes(g.out_c, case.seed ^ 3)
            .iter()
            .map(|&b| 1e-4 + b as f32 * 2e-5)
            .collect();
        let out_zero = (case.seed % 256) as i32;
        let requant = Requant {
            in_zero: (case.seed >> 8) as i32 & 255,
            multiplier,
            out_zero,
            lo: if case.relu { out_zero } else { 0 },
            hi: 255,
            residual: case
                .residual
                .then_some((((case.seed >> 16) & 255) as i32, 0.37)),
        };
        let conv = PackedConv::new(g, &w, bias, requant);
        let residual = case.residual.then(|| bytes(conv.out_len(), case.seed ^ 4));
        (conv, w, x, residual)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn every_kernel_equals_the_definition(case in cases()) {
            let (conv, w, x, residual) = build(&case);
            let want = reference(&conv, &w, &x, residual.as_deref());
            for isa in Isa::available() {
                let mut out = vec![CANARY; conv.out_len()];
                conv.run(isa.dot_i16(), &x, residual.as_deref(), &mut out);
                prop_assert_eq!(&out, &want, "{} kernel", isa.name());
            }
        }
    }

    #[test]
    fn round_half_even_matches_the_standard_library() {
        for &v in &[
            0.5f32, 1.5, 2.5, -0.5, -1.5, 3.49999, 254.5, 255.5, -127.5, 1e7, -1e9, 4194303.5,
        ] {
            let want = v.clamp(-4_194_304.0, 4_194_304.0).round_ties_even() as i32;
            assert_eq!(round_half_even(v), want, "{v}");
        }
    }

    #[test]
    fn resnext50_shapes_are_consistent() {
        // The stem, a grouped 3x3/2 and a pointwise 1x1 of resnext50_32x4d.
        for (geom, macs) in [
            (
                ConvGeometry {
                    in_h: 224,
                    in_w: 224,
                    in_c: 3,
                    out_c: 64,
                    groups: 1,
                    kernel: 7,
                    stride: 2,
                    pad: 3,
                },
                118_013_952,
            ),
            (
                ConvGeometry {
                    in_h: 56,
                    in_w: 56,
                    in_c: 256,
                    out_c: 256,
                    groups: 32,
                    kernel: 3,
                    stride: 2,
                    pad: 1,
                },
                14_450_688,
            ),
            (
                ConvGeometry {
                    in_h: 7,
                    in_w: 7,
                    in_c: 1024,
                    out_c: 2048,
                    groups: 1,
                    kernel: 1,
                    stride: 1,
                    pad: 0,
                },
                102_760_448,
            ),
        ] {
            assert!(geom.check().is_ok());
            assert_eq!(geom.macs(), macs);
        }
    }
}

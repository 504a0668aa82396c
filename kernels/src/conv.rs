//! The native int8 convolution: NHWC u8 activations (batch 1), int8 weights packed once for
//! the kernel family in use ([`PackedWeights`]), int32 bias, and requantization (per-channel
//! scale, zero point, ReLU clamp, optional residual input) fused into the pass that writes the
//! output. Every shape of a ResNeXt: the 7x7/2 stem, grouped 3x3 (stride 1 and 2) and pointwise
//! 1x1 (stride 1 and 2).
//!
//! Two paths. Where the ISA has a direct kernel ([`DirectU8`]: grouped convolutions, and dense
//! ones with a window where it has no requantizing dot kernel), the input is copied once into a
//! buffer padded with its zero point and the kernel reads each window in place. Elsewhere, for
//! each block of [`MAX_ROWS`] output pixels and each group, the input patch (taps x channels of
//! the group; the zero point where the window leaves the image) is gathered and handed to the
//! dispatched dot kernel; a dense pointwise convolution with u8 quads reads its rows in place.
//! Where the ISA has kernels that requantize their own tiles ([`DotU8Requant`],
//! [`DirectU8Requant`]), the accumulators never reach memory; otherwise they do, and a
//! requantization pass reads them back. Output pixels are split across the worker pool.

use crate::aligned::Aligned;
pub use crate::requant::round_half_even;
use crate::requant::{requantize, Requantize};
use crate::{
    DirectShape, DirectU8, DirectU8Requant, DotU8Requant, Family, Isa, Kernel, MAX_ROWS, PANEL,
};
use std::cell::RefCell;
use std::ops::Range;
use std::sync::Mutex;

/// The most gathered patch rows one call of a requantizing dot kernel takes.
const MAX_GATHERED: usize = 256;

/// The largest kernel, stride or padding a native convolution accepts.
pub const MAX_WINDOW: usize = 64;

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
    /// [`Self::depth`] rounded up to the u8 kernels' quad width.
    pub fn depth_quads(&self) -> usize {
        self.depth().div_ceil(4) * 4
    }
    /// Multiply-accumulates of one image.
    pub fn macs(&self) -> usize {
        self.out_h() * self.out_w() * self.out_c * self.depth()
    }
    /// The shape the [`DirectU8`] kernels take this convolution in, if they do: a grouped
    /// convolution with 4, 8 or a multiple of 16 channels per group, or a dense one with a
    /// window (the stem: its 3 input channels padded to 4 in the padded input). Pointwise dense
    /// convolutions stay with the dot kernels, which read their rows in place.
    pub fn direct_shape(&self) -> Option<DirectShape> {
        let (cin, cout) = (self.cpg_in(), self.cpg_out());
        let in_c = if cin.is_multiple_of(4) {
            self.in_c
        } else if self.groups == 1 {
            cin.div_ceil(4) * 4
        } else {
            return None;
        };
        let s = DirectShape {
            in_c,
            out_c: self.out_c,
            cin: cin.div_ceil(4) * 4,
            cout,
            kernel: self.kernel,
            stride: self.stride,
            row: (self.in_w + 2 * self.pad) * in_c,
        };
        (s.supported() && (self.groups > 1 || self.kernel > 1)).then_some(s)
    }

    /// Whether the geometry makes sense (and its arithmetic cannot overflow): groups divide the
    /// channels, kernel, stride and padding are at most [`MAX_WINDOW`] and the window fits.
    pub fn check(&self) -> Result<(), String> {
        if self.groups == 0
            || !self.in_c.is_multiple_of(self.groups)
            || !self.out_c.is_multiple_of(self.groups)
        {
            return Err(format!(
                "{} groups do not divide {} -> {} channels",
                self.groups, self.in_c, self.out_c
            ));
        }
        // Bounds before arithmetic: the attributes come from a file.
        let small = |v: usize| v <= MAX_WINDOW;
        if !(small(self.kernel) && small(self.stride) && small(self.pad))
            || self.kernel == 0
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

/// The requantization of a convolution's outputs ([`crate::requant`] defines it):
/// input zero point, per-channel multiplier, output zero point, clamp bounds, and the residual
/// input's zero point and multiplier.
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
        let residual = self.residual.zip(residual).map(|((rz, rm), r)| (r, rz, rm));
        requantize(acc, self.multiplier[o], residual, self.bounds())
    }

    /// Output zero point and clamp bounds.
    fn bounds(&self) -> (i32, i32, i32) {
        (self.out_zero, self.lo, self.hi)
    }

    /// What a kernel that requantizes its own tiles needs for output `channels`, with the
    /// accumulators' `bias` (of every channel).
    pub fn for_kernel<'a>(&'a self, bias: &'a [i32], channels: Range<usize>) -> Requantize<'a> {
        Requantize {
            bias: &bias[channels.clone()],
            multiplier: &self.multiplier[channels],
            zero: self.out_zero,
            lo: self.lo,
            hi: self.hi,
            residual: self.residual,
        }
    }

    /// [`Self::apply`] over a row of output channels (`multiplier` the row's slice), written
    /// so that the compiler vectorizes it; the same f32 operations, so the same bits. On x86_64
    /// the same code is also compiled for AVX-512 and AVX2 and picked at run time (without
    /// them, SSE2 has neither 32-bit min/max nor more than 4 lanes); on armv7 with NEON,
    /// [`crate::armv7::requantize_rows`] (the baseline there has no vector unit).
    pub fn apply_row(
        &self,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: AVX-512 F/BW are present (checked just above).
                return unsafe { self.apply_row_avx512(acc, multiplier, residual, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above).
                return unsafe { self.apply_row_avx2(acc, multiplier, residual, out) };
            }
        }
        #[cfg(target_arch = "arm")]
        if crate::armv7::available() {
            let (zero, lo, hi) = self.bounds();
            let rq = (zero, lo, hi, self.residual);
            let m = &multiplier[..out.len()];
            return crate::armv7::requantize_rows(acc, m, rq, residual, out);
        }
        self.apply_row_body(acc, multiplier, residual, out)
    }

    /// [`Self::apply_row`] over consecutive rows of `multiplier.len()` channels (`acc`, the
    /// residual input and `out` each holding whole rows one after another).
    pub fn apply_rows(
        &self,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        let width = multiplier.len();
        #[cfg(target_arch = "arm")]
        if crate::armv7::available() {
            // One call for all rows: the per-call setup weighs on rows of a few channels.
            let (zero, lo, hi) = self.bounds();
            let rq = (zero, lo, hi, self.residual);
            return crate::armv7::requantize_rows(acc, multiplier, rq, residual, out);
        }
        for (r, (a, o)) in acc
            .chunks_exact(width)
            .zip(out.chunks_exact_mut(width))
            .enumerate()
        {
            let res = residual.map(|rv| &rv[r * width..(r + 1) * width]);
            self.apply_row(a, multiplier, res, o);
        }
    }

    /// # Safety
    /// AVX-512 F and BW must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avx512f,avx512bw")]
    unsafe fn apply_row_avx512(
        &self,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        self.apply_row_body(acc, multiplier, residual, out)
    }

    /// # Safety
    /// AVX2 must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_row_avx2(
        &self,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        self.apply_row_body(acc, multiplier, residual, out)
    }

    #[inline(always)]
    fn apply_row_body(
        &self,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        let bounds = self.bounds();
        match (self.residual, residual) {
            (Some((rz, rm)), Some(res)) => {
                for (((d, &a), &m), &r) in out.iter_mut().zip(acc).zip(multiplier).zip(res) {
                    *d = requantize(a, m, Some((r, rz, rm)), bounds);
                }
            }
            _ => {
                for ((d, &a), &m) in out.iter_mut().zip(acc).zip(multiplier) {
                    *d = requantize(a, m, None, bounds);
                }
            }
        }
    }
}

/// Weights packed for one kernel family.
#[derive(Clone, Debug, PartialEq)]
pub enum PackedWeights {
    /// Per group, in panels of [`PANEL`] outputs (`width` of them, see [`crate`]):
    /// `[depth_padded / 2][width][2]` i16.
    I16(Aligned<i16>),
    /// Per group, in panels of [`PANEL`] outputs: `[depth_quads / 4][width][4]` i8, and the bias less
    /// `in_zero * sum(weights)` of each output channel (the patch carries `x`, not `x - in_zero`);
    /// for a convolution the [`DirectU8`] kernels take, also the weights in their layout,
    /// in blocks of 16 outputs (`DirectShape::weight_at`; input channels padded to 4 with zeros).
    U8 {
        w: Aligned<i8>,
        bias: Vec<i32>,
        direct: Option<Aligned<i8>>,
    },
}

/// A convolution ready to run: geometry, packed weights, bias, requantization.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedConv {
    pub geom: ConvGeometry,
    pub packed: PackedWeights,
    pub bias: Vec<i32>,
    pub requant: Requant,
}

impl PackedConv {
    /// Packs ONNX-ordered weights `[out_c][cpg_in][k][k]` (int8) for a kernel `family`.
    pub fn new(
        geom: ConvGeometry,
        w: &[i8],
        bias: Vec<i32>,
        requant: Requant,
        family: Family,
    ) -> Self {
        let (k, cin, cout) = (geom.kernel, geom.cpg_in(), geom.cpg_out());
        assert_eq!(w.len(), geom.out_c * cin * k * k);
        assert_eq!(bias.len(), geom.out_c);
        assert_eq!(requant.multiplier.len(), geom.out_c);
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
        let packed = match family {
            Family::I16Pairs => {
                let dp = geom.depth_padded();
                let mut p = Aligned::new(geom.groups * dp * cout);
                each(&mut |oc, d, v| p[at(oc, d, 2, dp)] = v as i16);
                PackedWeights::I16(p)
            }
            Family::U8Quads => {
                let dq = geom.depth_quads();
                let mut p = Aligned::new(geom.groups * dq * cout);
                let mut adjusted = bias.clone();
                each(&mut |oc, d, v| {
                    p[at(oc, d, 4, dq)] = v;
                    adjusted[oc] -= requant.in_zero * v as i32;
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
        };
        PackedConv {
            geom,
            packed,
            bias,
            requant,
        }
    }

    /// The accumulators (bias included, before requantization) of a pointwise convolution on
    /// one pixel `x` (`in_c` bytes): the int8 matrix-vector product of a classifier's last
    /// layer, on the kernels of `isa`.
    /// The weight panels are split across `threads` (the product streams the whole weight
    /// matrix from memory for one row: two cores fetch it faster than one).
    pub fn accumulate_pixel(&self, isa: Isa, x: &[u8], threads: usize) -> Vec<i32> {
        let g = &self.geom;
        assert!(g.kernel == 1 && g.groups == 1 && x.len() == g.in_c);
        match (isa.kernel(), &self.packed) {
            (Kernel::U8(dot), PackedWeights::U8 { w, bias, .. }) => {
                let dq = g.depth_quads();
                let mut patch = vec![0u8; dq];
                patch[..x.len()].copy_from_slice(x);
                let mut acc = bias.clone();
                let per = g.out_c.div_ceil(threads.max(1)).div_ceil(PANEL) * PANEL;
                in_chunks(&mut acc, per, threads, &|i, acc| {
                    let o0 = i * per;
                    let w = &w[o0 * dq..(o0 + acc.len()) * dq];
                    dot(1, &patch, dq, w, acc.len(), acc);
                });
                acc
            }
            (Kernel::I16(dot), PackedWeights::I16(w)) => {
                let mut patch = vec![0i16; g.depth_padded()];
                for (d, &v) in patch.iter_mut().zip(x) {
                    *d = v as i16 - self.requant.in_zero as i16;
                }
                let mut acc = self.bias.clone();
                dot(1, &patch, g.depth_padded(), w, g.out_c, &mut acc);
                acc
            }
            _ => panic!("weights packed for another kernel family"),
        }
    }

    /// Output length of one image.
    pub fn out_len(&self) -> usize {
        self.geom.out_h() * self.geom.out_w() * self.geom.out_c
    }

    /// Runs on `x` (`[in_h][in_w][in_c]` u8) with the kernels of `isa`, writing `out`
    /// (`[out_h][out_w][out_c]`), with the residual input (shaped as `out`) if the
    /// requantization has one.
    pub fn run(&self, isa: Isa, x: &[u8], residual: Option<&[u8]>, out: &mut [u8]) {
        self.run_threads(isa, x, residual, out, 1)
    }

    /// [`Self::run`] with the output pixels split into `threads` contiguous ranges, run on the
    /// worker pool ([`crate::workers`]) and the calling thread. Each range is computed exactly as alone, so the result
    /// does not depend on the thread count.
    pub fn run_threads(
        &self,
        isa: Isa,
        x: &[u8],
        residual: Option<&[u8]>,
        out: &mut [u8],
        threads: usize,
    ) {
        let g = &self.geom;
        assert_eq!(x.len(), g.in_h * g.in_w * g.in_c);
        assert_eq!(out.len(), self.out_len());
        assert_eq!(residual.is_some(), self.requant.residual.is_some());
        if let Some(r) = residual {
            assert_eq!(r.len(), out.len());
        }
        let pixels = g.out_h() * g.out_w();
        // Ranges in whole 8-pixel tiles, up to 4 per thread when there are enough pixels
        // (64 or more per range): the threads take them as they come, so that one that starts
        // late or runs slower (another process on its core) leaves more to the others.
        let threads = threads.max(1);
        let ranges = threads * (pixels / (threads * 64)).clamp(1, 4);
        let per = match pixels.div_ceil(ranges) {
            // Whole tiles where that costs little balance; small layers (49 pixels of
            // resnext50's last stage) split as evenly as they can.
            n if n >= 64 => n.div_ceil(8) * 8,
            n => n,
        };
        // A dense convolution (the stem) runs faster on a requantizing dot kernel, if the ISA
        // has one, than on the direct kernel: its patch rows copy in whole window rows, and
        // the depth pads 7 x 7 x 3 to 148, not 7 x 7 x 4.
        let dense_fused = g.groups == 1 && isa.dot_requant(g.out_c).is_some();
        if let (
            Some(kernel),
            Some(shape),
            PackedWeights::U8 {
                direct: Some(w),
                bias,
                ..
            },
            false,
        ) = (isa.direct(), g.direct_shape(), &self.packed, dense_fused)
        {
            let direct = Direct {
                conv: self,
                kernel,
                fused: isa.direct_requant(),
                shape,
                w,
                bias,
            };
            return PADDED.with_borrow_mut(|xp| {
                self.pad_input(x, shape.in_c, xp, threads);
                let xp = &xp[..];
                if threads <= 1 || per >= pixels {
                    return direct.run_pixels(xp, residual, out, 0);
                }
                in_chunks(out, per * g.out_c, threads, &|i, chunk| {
                    direct.run_pixels(xp, residual, chunk, i * per)
                })
            });
        }
        let kernel = isa.kernel();
        // A dense convolution whose kernel requantizes its own tiles (only u8 weights here).
        let fused = match &self.packed {
            PackedWeights::U8 { .. } if g.groups == 1 => isa.dot_requant(g.out_c),
            _ => None,
        };
        if threads <= 1 || per >= pixels {
            return self.run_pixels((kernel, fused), x, residual, out, 0);
        }
        in_chunks(out, per * g.out_c, threads, &|i, chunk| {
            self.run_pixels((kernel, fused), x, residual, chunk, i * per)
        });
    }

    /// Computes the output pixels `p_start..` that `out` (a slice of the whole output) holds,
    /// with the dot `kernel`, or the `fused` one (which requantizes too) if there is one.
    fn run_pixels(
        &self,
        (kernel, fused): (Kernel, Option<DotU8Requant>),
        x: &[u8],
        residual: Option<&[u8]>,
        out: &mut [u8],
        p_start: usize,
    ) {
        let g = &self.geom;
        let (ow, k, s, p) = (g.out_w(), g.kernel, g.stride, g.pad);
        let (cin, cout) = (g.cpg_in(), g.cpg_out());
        let zx = self.requant.in_zero;
        // The depth one patch row holds, and the bias the accumulators start from.
        let (depth, bias) = match (&kernel, &self.packed) {
            (Kernel::I16(_), PackedWeights::I16(_)) => (g.depth_padded(), &self.bias),
            (Kernel::U8(_), PackedWeights::U8 { bias, .. }) => (g.depth_quads(), bias),
            _ => panic!("weights packed for another kernel family"),
        };
        // A pointwise conv over the whole input reads its rows in place (u8 family).
        // A dense convolution on u8 quads gathers each window row in one copy.
        let dense_u8 = matches!(kernel, Kernel::U8(_)) && g.groups == 1;
        let in_place = matches!(kernel, Kernel::U8(_))
            && k == 1
            && s == 1
            && p == 0
            && g.groups == 1
            && cin == depth;
        let n16 = if matches!(kernel, Kernel::I16(_)) {
            MAX_ROWS * depth
        } else {
            0
        };
        let p_end = p_start + out.len() / g.out_c;
        // Rows per kernel call. A kernel that requantizes its own tiles takes many at once, so
        // that each weight panel streams from memory once, not once per 32 rows: all of them
        // when it reads them in place, up to 256 gathered ones of a pointwise convolution (its
        // patch rows are its input pixels; a window's would take more memory than they save).
        let block = match fused {
            Some(_) if in_place => p_end - p_start,
            Some(_) if k == 1 => MAX_GATHERED.min(p_end - p_start).max(MAX_ROWS),
            _ => MAX_ROWS,
        };
        let n8 = if matches!(kernel, Kernel::U8(_)) && !in_place {
            block * depth
        } else {
            0
        };
        let mut scratch = SCRATCH.take();
        let (patch16, patch8, acc) =
            scratch.buffers(n16, n8, if fused.is_some() { 0 } else { MAX_ROWS * cout });
        let mut p0 = p_start;
        while p0 < p_end {
            let rows = block.min(p_end - p0);
            for grp in 0..g.groups {
                let c0 = grp * cout;
                if fused.is_none() {
                    for a in acc[..rows * cout].chunks_exact_mut(cout) {
                        a.copy_from_slice(&bias[c0..c0 + cout]);
                    }
                }
                if !in_place {
                    for r in 0..rows {
                        let (oy, ox) = ((p0 + r) / ow, (p0 + r) % ow);
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            if dense_u8 {
                                // The row's k taps of every channel are k * cin bytes in a row
                                // of the input, where they fall inside it.
                                let row = &mut patch8[r * depth + ky * k * cin..][..k * cin];
                                gather_row(row, x, (iy, (ox * s) as isize - p as isize), g, zx);
                                continue;
                            }
                            for kx in 0..k {
                                let ix = (ox * s + kx) as isize - p as isize;
                                let d0 = r * depth + (ky * k + kx) * cin;
                                let outside = iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize;
                                let at = if outside {
                                    0
                                } else {
                                    (iy as usize * g.in_w + ix as usize) * g.in_c + grp * cin
                                };
                                match kernel {
                                    // Outside the image: x = in_zero, which is 0 once shifted.
                                    Kernel::I16(_) => {
                                        let dst = &mut patch16[d0..d0 + cin];
                                        if outside {
                                            dst.fill(0);
                                        } else {
                                            for (d, &v) in dst.iter_mut().zip(&x[at..at + cin]) {
                                                *d = v as i16 - zx as i16;
                                            }
                                        }
                                    }
                                    Kernel::U8(_) => {
                                        let dst = &mut patch8[d0..d0 + cin];
                                        if outside {
                                            dst.fill(zx as u8);
                                        } else {
                                            copy_small(dst, &x[at..at + cin]);
                                        }
                                    }
                                }
                            }
                        }
                        // The depth's padding (never written here: whatever an earlier layer
                        // left in the scratch buffer) meets zero weights.
                    }
                }
                let weights = (c0 * depth)..(c0 + cout) * depth;
                let rows_patch = if in_place {
                    &x[p0 * cin..(p0 + rows) * cin]
                } else {
                    &patch8[..]
                };
                if let (Some(fused), PackedWeights::U8 { w, .. }) = (fused, &self.packed) {
                    let at = p0 * g.out_c + c0;
                    let rq = self.requant.for_kernel(bias, c0..c0 + cout);
                    let res = residual.map(|r| &r[at..]);
                    let out = &mut out[at - p_start * g.out_c..];
                    fused(
                        rows,
                        rows_patch,
                        depth,
                        &w[weights],
                        cout,
                        &rq,
                        res,
                        out,
                        g.out_c,
                    );
                    continue;
                }
                let acc = &mut acc[..rows * cout];
                match (kernel, &self.packed) {
                    (Kernel::I16(dot), PackedWeights::I16(w)) => {
                        dot(rows, patch16, depth, &w[weights], cout, acc);
                    }
                    (Kernel::U8(dot), PackedWeights::U8 { w, .. }) => {
                        dot(rows, rows_patch, depth, &w[weights], cout, acc);
                    }
                    _ => unreachable!("checked above"),
                }
                self.write_rows(acc, (p0, p_start), c0..c0 + cout, residual, out);
            }
            p0 += rows;
        }
        SCRATCH.set(scratch);
    }

    /// Copies `x` into `xp` with a border of `pad` pixels holding the input zero point, the
    /// input of the [`DirectU8`] kernels, with `in_c` bytes per pixel (more than the input's
    /// channels when they are padded to a quad; the extra ones meet zero weights).
    fn pad_input(&self, x: &[u8], in_c: usize, xp: &mut Vec<u8>, threads: usize) {
        let g = &self.geom;
        let (pw, ph, c) = (g.in_w + 2 * g.pad, g.in_h + 2 * g.pad, g.in_c);
        let zero = self.requant.in_zero as u8;
        // Every byte is written below, in parallel by rows; `resize` only sizes the buffer.
        xp.resize(ph * pw * in_c, zero);
        let rows = ph.div_ceil(threads.max(1));
        in_chunks(xp, rows * pw * in_c, threads, &|i, chunk| {
            for (r, dst) in chunk.chunks_exact_mut(pw * in_c).enumerate() {
                let Some(iy) = (i * rows + r).checked_sub(g.pad).filter(|&y| y < g.in_h) else {
                    dst.fill(zero);
                    continue;
                };
                let src = &x[iy * g.in_w * c..(iy + 1) * g.in_w * c];
                let (left, rest) = dst.split_at_mut(g.pad * in_c);
                let (mid, right) = rest.split_at_mut(g.in_w * in_c);
                left.fill(zero);
                right.fill(zero);
                if in_c == c {
                    mid.copy_from_slice(src);
                } else {
                    for (d, px) in mid.chunks_exact_mut(in_c).zip(src.chunks_exact(c)) {
                        d[..c].copy_from_slice(px);
                        d[c..].fill(zero);
                    }
                }
            }
        });
    }

    /// Requantizes the accumulators `acc` (`[rows][channels.len()]`) of output pixels `p0..`
    /// and output `channels` into `out`, which holds the pixels from `p_start` on.
    fn write_rows(
        &self,
        acc: &[i32],
        (p0, p_start): (usize, usize),
        channels: Range<usize>,
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        let g = &self.geom;
        let width = channels.len();
        let m = &self.requant.multiplier[channels.clone()];
        if width == g.out_c {
            // Whole output rows, one after another in `out` as in `acc`.
            let at = p0 * g.out_c;
            let local = at - p_start * g.out_c;
            let dst = &mut out[local..local + acc.len()];
            let res = residual.map(|rv| &rv[at..at + acc.len()]);
            return self.requant.apply_rows(acc, m, res, dst);
        }
        for (r, a) in acc.chunks_exact(width).enumerate() {
            let at = (p0 + r) * g.out_c + channels.start;
            let local = at - p_start * g.out_c;
            let dst = &mut out[local..local + width];
            self.requant
                .apply_row(a, m, residual.map(|rv| &rv[at..at + width]), dst);
        }
    }
}

/// Calls `f(i, chunk)` for the `len`-byte chunks of `out`, on the worker pool.
fn in_chunks<T: Send>(
    out: &mut [T],
    len: usize,
    threads: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let chunks: Vec<Mutex<Option<&mut [T]>>> =
        out.chunks_mut(len).map(|c| Mutex::new(Some(c))).collect();
    crate::workers::for_each(chunks.len(), threads, &|i| {
        let chunk = chunks[i].lock().ok().and_then(|mut c| c.take());
        if let Some(chunk) = chunk {
            f(i, chunk)
        }
    });
}

thread_local! {
    /// The padded input of the direct kernels, kept between layers and runs.
    static PADDED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Each thread's patch rows and accumulators, kept between layers and runs (taken out
    /// while a layer runs and put back), so that an inference allocates none once the
    /// largest layer has run.
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

/// Working memory of the convolutions: patch rows of either family and i32 accumulators.
/// What a layer finds there is left over from another; every value it reads it has written
/// (a patch row's depth padding excepted, which meets zero weights).
#[derive(Default)]
struct Scratch {
    patch16: Vec<i16>,
    patch8: Vec<u8>,
    acc: Vec<i32>,
}

impl Scratch {
    const fn new() -> Self {
        Scratch {
            patch16: Vec::new(),
            patch8: Vec::new(),
            acc: Vec::new(),
        }
    }

    /// The three buffers, at least `n16`, `n8` and `acc` long.
    fn buffers(
        &mut self,
        n16: usize,
        n8: usize,
        acc: usize,
    ) -> (&mut [i16], &mut [u8], &mut [i32]) {
        fn at_least<T: Default + Clone>(v: &mut Vec<T>, n: usize) -> &mut [T] {
            if v.len() < n {
                v.resize(n, T::default());
            }
            &mut v[..n]
        }
        (
            at_least(&mut self.patch16, n16),
            at_least(&mut self.patch8, n8),
            at_least(&mut self.acc, acc),
        )
    }
}

/// A convolution on the [`DirectU8`] path.
struct Direct<'a> {
    conv: &'a PackedConv,
    kernel: DirectU8,
    /// The kernel that requantizes its own tiles, if the ISA has one (then `kernel` is unused).
    fused: Option<DirectU8Requant>,
    shape: DirectShape,
    w: &'a [i8],
    bias: &'a [i32],
}

impl Direct<'_> {
    /// Computes the output pixels `p_start..` that `out` holds from the padded input `xp`, in
    /// runs along one output row of at most [`MAX_ROWS`] pixels.
    fn run_pixels(&self, xp: &[u8], residual: Option<&[u8]>, out: &mut [u8], p_start: usize) {
        let g = &self.conv.geom;
        let (ow, c, s) = (g.out_w(), g.out_c, g.stride);
        let row = self.shape.row;
        let mut scratch = SCRATCH.take();
        let (_, _, acc) = scratch.buffers(
            0,
            0,
            if self.fused.is_some() {
                0
            } else {
                MAX_ROWS * c
            },
        );
        let p_end = p_start + out.len() / c;
        let mut p0 = p_start;
        while p0 < p_end {
            let (oy, ox) = (p0 / ow, p0 % ow);
            let n = MAX_ROWS.min(p_end - p0).min(ow - ox);
            let base = oy * s * row + ox * s * self.shape.in_c;
            if let Some(fused) = self.fused {
                let rq = self.conv.requant.for_kernel(self.bias, 0..c);
                let (at, xp) = (p0 * c, &xp[base..]);
                let out = &mut out[at - p_start * c..];
                fused(
                    &self.shape,
                    xp,
                    n,
                    self.w,
                    &rq,
                    residual.map(|r| &r[at..]),
                    out,
                );
                p0 += n;
                continue;
            }
            let acc = &mut acc[..n * c];
            for a in acc.chunks_exact_mut(c) {
                a.copy_from_slice(self.bias);
            }
            (self.kernel)(&self.shape, &xp[base..], n, self.w, acc);
            let (at, local) = (p0 * c, (p0 - p_start) * c);
            self.conv.requant.apply_rows(
                acc,
                &self.conv.requant.multiplier,
                residual.map(|rv| &rv[at..at + n * c]),
                &mut out[local..local + n * c],
            );
            p0 += n;
        }
        SCRATCH.set(scratch);
    }
}

/// One window row of a dense convolution's patch: the `kernel` taps from input pixel
/// `(iy, ix0)` on, every channel (`row` holds `kernel * in_c` bytes), the input zero point `zx`
/// where they leave the image.
#[inline]
fn gather_row(row: &mut [u8], x: &[u8], (iy, ix0): (isize, isize), g: &ConvGeometry, zx: i32) {
    // The taps from the geometry, not `row.len() / in_c`: a division per window row was a
    // good part of the stem's gather.
    let (c, taps) = (g.in_c, g.kernel);
    debug_assert_eq!(row.len(), taps * c);
    if iy < 0 || iy >= g.in_h as isize {
        return row.fill(zx as u8);
    }
    // Taps lo..hi are inside the image.
    let lo = (-ix0).clamp(0, taps as isize) as usize;
    let hi = (g.in_w as isize - ix0).clamp(lo as isize, taps as isize) as usize;
    if lo > 0 {
        row[..lo * c].fill(zx as u8);
    }
    if hi < taps {
        row[hi * c..].fill(zx as u8);
    }
    if hi > lo {
        let at = (iy as usize * g.in_w + (ix0 + lo as isize) as usize) * c;
        copy_bytes(&mut row[lo * c..hi * c], &x[at..at + (hi - lo) * c]);
    }
}

/// `dst.copy_from_slice(src)`, without a library call for the short rows of a stem's window
/// (7 taps x 3 channels: two overlapping 16-byte moves).
#[inline(always)]
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    let n = dst.len();
    match n {
        16..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        8..=15 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// `dst.copy_from_slice(src)` without a call for the 4- and 8-channel groups of ResNeXt's
/// grouped convs.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    match dst.len() {
        3 => dst.copy_from_slice(&src[..3]),
        4 => dst.copy_from_slice(&src[..4]),
        8 => dst.copy_from_slice(&src[..8]),
        16 => dst.copy_from_slice(&src[..16]),
        _ => dst.copy_from_slice(src),
    }
}

/// Quantizes planar floats `x` (`[channels][pixels]`) to interleaved u8 `out`
/// (`[pixels][channels]`): `round_half_even(v * recip) + zero`, saturated to a byte.
/// Pixels are split into `threads` ranges on the worker pool.
pub fn quantize_to_nhwc(
    x: &[f32],
    (channels, pixels): (usize, usize),
    recip: f32,
    zero: u8,
    out: &mut [u8],
    threads: usize,
) {
    assert!(x.len() == channels * pixels && out.len() == x.len());
    if channels == 0 || pixels == 0 {
        return;
    }
    let per = pixels.div_ceil(threads.max(1));
    // Each plane's values are quantized in blocks into a contiguous buffer (a loop the compiler
    // vectorizes), then interleaved: quantizing straight into the strided output kept it
    // scalar (27 instructions per value on aarch64).
    const BLOCK: usize = 64;
    in_chunks(out, per * channels, threads, &|i, chunk| {
        let p0 = i * per;
        let n = chunk.len() / channels;
        let mut q = [0u8; BLOCK];
        for (c, plane) in x.chunks_exact(pixels).enumerate() {
            let plane = &plane[p0..p0 + n];
            for (b, values) in plane.chunks(BLOCK).enumerate() {
                for (d, &v) in q.iter_mut().zip(values) {
                    *d = (round_half_even(v * recip) + zero as i32).clamp(0, 255) as u8;
                }
                let dst = chunk[(b * BLOCK) * channels + c..]
                    .iter_mut()
                    .step_by(channels);
                for (d, &v) in dst.zip(&q[..values.len()]) {
                    *d = v;
                }
            }
        }
    });
}

/// Global average pool of NHWC u8 `x` (`pixels` x `channels`), requantized: per channel
/// `round_half_even((sum - pixels * in_zero) as f32 * in_scale * (1 / pixels) * (1 / out_scale))
/// + out_zero`, saturated. The sum is exact, so every ISA gets the same bytes.
pub fn average_pool_nhwc(
    x: &[u8],
    (pixels, channels): (usize, usize),
    (in_scale, in_zero): (f32, i32),
    (out_scale, out_zero): (f32, i32),
    out: &mut [u8],
) {
    assert!(x.len() == pixels * channels && out.len() == channels && pixels > 0);
    let mut sums = vec![0i64; channels];
    for px in x.chunks_exact(channels) {
        for (s, &v) in sums.iter_mut().zip(px) {
            *s += v as i64;
        }
    }
    let (inv_n, inv_out) = ((pixels as f32).recip(), out_scale.recip());
    for (o, &s) in out.iter_mut().zip(&sums) {
        let mean = (s - pixels as i64 * in_zero as i64) as f32 * in_scale * inv_n;
        *o = (round_half_even(mean * inv_out) + out_zero).clamp(0, 255) as u8;
    }
}

/// Max pool on NHWC u8 (`kernel`, `stride`, symmetric `pad`); padded positions do not count.
/// Output rows are split into `threads` ranges on the worker pool.
#[allow(clippy::too_many_arguments)]
pub fn max_pool_nhwc(
    x: &[u8],
    (h, w, c): (usize, usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
    out: &mut [u8],
    threads: usize,
) {
    let oh = (h + 2 * pad - kernel) / stride + 1;
    let ow = (w + 2 * pad - kernel) / stride + 1;
    assert_eq!(out.len(), oh * ow * c);
    if out.is_empty() {
        return;
    }
    let rows = oh.div_ceil(threads.max(1));
    in_chunks(out, rows * ow * c, threads, &|i, chunk| {
        max_pool_rows(x, (h, w, c), (kernel, stride, pad), i * rows, chunk)
    });
}

/// The output rows from `oy0` on that `out` holds, of [`max_pool_nhwc`].
fn max_pool_rows(
    x: &[u8],
    (h, w, c): (usize, usize, usize),
    (kernel, stride, pad): (usize, usize, usize),
    oy0: usize,
    out: &mut [u8],
) {
    let ow = (w + 2 * pad - kernel) / stride + 1;
    for (r, row) in out.chunks_exact_mut(ow * c).enumerate() {
        let oy = oy0 + r;
        for ox in 0..ow {
            let dst = &mut row[ox * c..(ox + 1) * c];
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
    use crate::Isa;
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
        family: crate::Family,
        geom: ConvGeometry,
        relu: bool,
        residual: bool,
        seed: u64,
    }

    fn cases() -> impl Strategy<Value = Case> {
        (
            1usize..=12, // groups
            1usize..=9,  // channels per group in
            // Channels per group out: around 4, 8, 16, and over one weight panel (32).
            prop_oneof![3 => 1usize..=20, 1 => 30usize..=70],
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
                        family: crate::Family::I16Pairs,
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
        let conv = PackedConv::new(g, &w, bias, requant, case.family);
        let residual = case.residual.then(|| bytes(conv.out_len(), case.seed ^ 4));
        (conv, w, x, residual)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn every_kernel_equals_the_definition(case in cases()) {
            for isa in Isa::available() {
                let case = Case { family: isa.kernel().family(), ..case.clone() };
                let (conv, w, x, residual) = build(&case);
                let want = reference(&conv, &w, &x, residual.as_deref());
                let mut out = vec![CANARY; conv.out_len()];
                conv.run(isa, &x, residual.as_deref(), &mut out);
                prop_assert_eq!(&out, &want, "{} kernel", isa.name());
                for threads in [2, 3] {
                    let mut out = vec![CANARY; conv.out_len()];
                    conv.run_threads(isa, &x, residual.as_deref(), &mut out, threads);
                    prop_assert_eq!(&out, &want, "{} kernel, {} threads", isa.name(), threads);
                }
            }
        }
    }

    /// The convolutions of the direct kernels: grouped, in the group sizes they take (4, 8,
    /// multiples of 16 channels, wider outputs than inputs) and some they leave to the gather
    /// path (12), and dense ones with few input channels (the stem's 3, padded to 4).
    fn direct_cases() -> impl Strategy<Value = Case> {
        (
            prop::sample::select(vec![
                (4usize, 4usize, 1usize),
                (8, 8, 1),
                (12, 12, 1),
                (16, 16, 1),
                (32, 32, 1),
                (4, 16, 1),
                (3, 16, 0),
                (1, 32, 0),
                (5, 16, 0),
                (8, 16, 0),
                (3, 8, 0),
                (1, 4, 0),
            ]), // channels per group in and out; 0: dense
            1usize..=4, // groups (x 2 below), or output vectors when dense
            prop::sample::select(vec![1usize, 3, 5, 7]),
            1usize..=2,  // stride
            1usize..=13, // height
            1usize..=13, // width
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_filter_map(
                "kernel larger than the padded image",
                |((cin, cout, grouped), n, k, s, h, w, relu, residual, seed)| {
                    let groups = if grouped == 1 { 2 * n } else { 1 };
                    let cout = if grouped == 1 { cout } else { cout * n };
                    let geom = ConvGeometry {
                        in_h: h,
                        in_w: w,
                        in_c: groups * cin,
                        out_c: groups * cout,
                        groups,
                        kernel: k,
                        stride: s,
                        pad: k / 2,
                    };
                    geom.check().ok().map(|_| Case {
                        family: crate::Family::U8Quads,
                        geom,
                        relu,
                        residual,
                        seed,
                    })
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn direct_convolutions_equal_the_definition_on_every_kernel(case in direct_cases()) {
            for isa in Isa::available() {
                let case = Case { family: isa.kernel().family(), ..case.clone() };
                let (conv, w, x, residual) = build(&case);
                let want = reference(&conv, &w, &x, residual.as_deref());
                for threads in [1, 3] {
                    let mut out = vec![CANARY; conv.out_len()];
                    conv.run_threads(isa, &x, residual.as_deref(), &mut out, threads);
                    prop_assert_eq!(&out, &want, "{} kernel, {} threads", isa.name(), threads);
                }
            }
        }

        /// Dense pointwise convolutions of whole weight panels, those that the kernels which
        /// requantize their own tiles take (stride 1 in place, stride 2 gathered).
        #[test]
        fn pointwise_convolutions_equal_the_definition_on_every_kernel(
            in_c in prop::sample::select(vec![4usize, 8, 12, 64, 100, 256]),
            panels in 1usize..=3,
            stride in 1usize..=2,
            // Up to 50 output pixels at stride 2: more than one block of gathered rows.
            h in 1usize..=20,
            w in 1usize..=9,
            relu in any::<bool>(),
            residual in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let geom = ConvGeometry {
                in_h: h,
                in_w: w,
                in_c,
                out_c: PANEL * panels,
                groups: 1,
                kernel: 1,
                stride,
                pad: 0,
            };
            for isa in Isa::available() {
                let family = isa.kernel().family();
                let case = Case { family, geom: geom.clone(), relu, residual, seed };
                let (conv, w, x, residual) = build(&case);
                let want = reference(&conv, &w, &x, residual.as_deref());
                for threads in [1, 2] {
                    let mut out = vec![CANARY; conv.out_len()];
                    conv.run_threads(isa, &x, residual.as_deref(), &mut out, threads);
                    prop_assert_eq!(&out, &want, "{} kernel, {} threads", isa.name(), threads);
                }
            }
        }
    }

    #[test]
    fn resnext_layers_with_a_window_take_the_direct_kernels() {
        let geom = |in_c: usize, groups| ConvGeometry {
            in_h: 56,
            in_w: 56,
            in_c,
            out_c: in_c,
            groups,
            kernel: 3,
            stride: 1,
            pad: 1,
        };
        // 32x4d's four stages and 32x8d's first; a pointwise or a 12-channel group does not.
        for (c, groups) in [(128, 32), (256, 32), (512, 32), (1024, 32), (256, 32)] {
            assert!(geom(c, groups).direct_shape().is_some(), "{c}/{groups}");
        }
        assert!(geom(96, 8).direct_shape().is_none());
        // Dense: a 3x3 takes them, a pointwise stays with the dot kernels.
        assert!(geom(256, 1).direct_shape().is_some());
        let pointwise = ConvGeometry {
            kernel: 1,
            pad: 0,
            ..geom(256, 1)
        };
        assert!(pointwise.direct_shape().is_none());
        // The stem: 3 channels padded to 4, 64 outputs.
        let stem = ConvGeometry {
            in_h: 224,
            in_w: 224,
            in_c: 3,
            out_c: 64,
            groups: 1,
            kernel: 7,
            stride: 2,
            pad: 3,
        };
        let s = stem
            .direct_shape()
            .expect("the stem takes the direct kernels");
        assert_eq!((s.in_c, s.cin, s.cout), (4, 4, 64));
    }

    #[test]
    fn input_quantization_rounds_ties_to_even_saturates_and_interleaves() {
        // Two channels of three pixels, scale 0.5 (recip 2): 0.25 * 2 = 0.5 -> 0, 0.75 * 2 =
        // 1.5 -> 2, and values beyond the byte range saturate.
        let x = [0.25f32, 0.75, -100.0, 1000.0, -0.25, f32::NAN];
        for threads in 1..=3 {
            let mut out = [0u8; 6];
            quantize_to_nhwc(&x, (2, 3), 2.0, 10, &mut out, threads);
            assert_eq!(out, [10, 255, 12, 10, 0, 10], "{threads} threads");
        }
    }

    #[test]
    fn input_quantization_interleaves_across_blocks_and_threads() {
        // 3 channels of 150 pixels: blocks of 64 values and a partial last one per thread.
        let (channels, pixels) = (3, 150);
        let x: Vec<f32> = (0..channels * pixels)
            .map(|i| (i as f32 * 0.37).sin() * 140.0)
            .collect();
        let want: Vec<u8> = (0..channels * pixels)
            .map(|i| {
                let v = x[(i % channels) * pixels + i / channels];
                (round_half_even(v * 0.9) + 7).clamp(0, 255) as u8
            })
            .collect();
        for threads in 1..=3 {
            let mut out = vec![0u8; channels * pixels];
            quantize_to_nhwc(&x, (channels, pixels), 0.9, 7, &mut out, threads);
            assert_eq!(out, want, "{threads} threads");
        }
    }

    #[test]
    fn max_pool_takes_the_largest_of_each_window_on_any_thread_count() {
        let (h, w, c) = (7, 6, 3);
        let x = bytes(h * w * c, 9);
        let (k, s, p) = (3, 2, 1);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut want = vec![0u8; oh * ow * c];
        for (i, v) in want.iter_mut().enumerate() {
            let (oy, ox, ch) = (i / c / ow, i / c % ow, i % c);
            for iy in (oy * s).saturating_sub(p)..(oy * s + k - p).min(h) {
                for ix in (ox * s).saturating_sub(p)..(ox * s + k - p).min(w) {
                    *v = (*v).max(x[(iy * w + ix) * c + ch]);
                }
            }
        }
        for threads in 1..=3 {
            let mut out = vec![CANARY; want.len()];
            max_pool_nhwc(&x, (h, w, c), k, s, p, &mut out, threads);
            assert_eq!(out, want, "{threads} threads");
        }
    }

    #[test]
    fn average_pool_dequantizes_averages_and_requantizes() {
        // Channel 0: (10 + 13 - 2 * 4) * 0.5 / 2 = 3.75 -> / 0.25 = 15 -> + 1 = 16.
        // Channel 1: (4 + 5 - 8) * 0.5 / 2 = 0.25 -> 1 -> 2. An out scale of 0.5 makes ties,
        // rounded to even: 7.5 -> 8 -> 9 and 0.5 -> 0 -> 1.
        let x = [10u8, 4, 13, 5];
        let mut out = [0u8; 2];
        average_pool_nhwc(&x, (2, 2), (0.5, 4), (0.25, 1), &mut out);
        assert_eq!(out, [16, 2]);
        average_pool_nhwc(&x, (2, 2), (0.5, 4), (0.5, 1), &mut out);
        assert_eq!(out, [9, 1]);
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

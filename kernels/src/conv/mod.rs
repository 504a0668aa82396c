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
//!
//! The files: [`geometry`] (shapes), [`pack`] (a convolution packed: [`PackedConv`], its
//! weights in each family's layout), the two
//! paths ([`gather`], [`direct`]), the requantization pass ([`requant_pass`]) and the per-thread
//! working memory ([`scratch`]); this one runs a convolution: which kernels of the set, on how
//! many threads.

mod direct;
mod gather;
pub mod geometry;
pub mod pack;
pub mod requant_pass;
mod scratch;
#[cfg(test)]
mod tests;

pub use crate::requant::round_half_even;
pub use geometry::{ConvGeometry, MAX_WINDOW};
pub use pack::{PackedConv, PackedWeights};
pub use requant_pass::LayerRequant;

use crate::requant::LayerWeightSums;
use crate::workers::in_chunks;
use crate::{
    DirectShape, DirectU8, DirectU8Requant, DotU8Requant, Isa, Kernel, KernelSet, Named,
    RequantRows, PANEL,
};
use direct::Direct;
use scratch::PADDED;
use std::ops::Range;

impl PackedConv {
    /// The accumulators (bias included, before requantization) of a pointwise convolution on
    /// one pixel `x` (`in_c` bytes): the int8 matrix-vector product of a classifier's last
    /// layer, on the kernels of `isa`.
    /// The weight panels are split across `threads` (the product streams the whole weight
    /// matrix from memory for one row: two cores fetch it faster than one).
    pub fn accumulate_pixel(&self, isa: Isa, x: &[u8], threads: usize) -> Vec<i32> {
        let g = &self.geom;
        assert!(g.kernel == 1 && g.groups == 1 && x.len() == g.in_c);
        match (isa.kernels().dot.f, &self.packed) {
            (Kernel::U8(dot), PackedWeights::U8 { w, bias, .. }) => {
                let dq = g.depth_bytes();
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
        let set = self.kernels(isa);
        match self.route(&set) {
            Route::Direct {
                kernel,
                fused,
                shape,
                w,
                bias,
                weight_sums,
            } => {
                let direct = Direct {
                    conv: self,
                    kernel: kernel.f,
                    fused: fused.map(|k| k.f),
                    requant_rows: set.requant_rows,
                    shape,
                    w,
                    bias,
                    weight_sums,
                };
                PADDED.with_borrow_mut(|xp| {
                    self.pad_input(x, shape.in_c, xp, threads);
                    let xp = &xp[..];
                    if threads <= 1 || per >= pixels {
                        return direct.run_pixels(xp, residual, out, 0);
                    }
                    in_chunks(out, per * g.out_c, threads, &|i, chunk| {
                        direct.run_pixels(xp, residual, chunk, i * per)
                    })
                })
            }
            Route::Dot { kernel, fused } => {
                let kernels = (kernel.f, fused.map(|k| k.f), set.requant_rows);
                if threads <= 1 || per >= pixels {
                    return self.run_pixels(kernels, x, residual, out, 0);
                }
                in_chunks(out, per * g.out_c, threads, &|i, chunk| {
                    self.run_pixels(kernels, x, residual, chunk, i * per)
                });
            }
        }
    }

    /// The kernel set this convolution runs on with `isa`: the ISA's own, except that the AMX
    /// tiles take only dense convolutions whose depth is whole 64-byte steps and whose outputs
    /// are whole panels (a ResNeXt's pointwise layers); the others run on the AVX-512 VNNI set.
    pub fn kernels(&self, isa: Isa) -> KernelSet {
        let g = &self.geom;
        let amx_shaped =
            g.groups == 1 && g.depth_bytes().is_multiple_of(64) && g.out_c.is_multiple_of(PANEL);
        match isa {
            Isa::Amx if !amx_shaped => Isa::Vnni.kernels(),
            _ => isa.kernels(),
        }
    }

    /// Which kernels of `set` run this convolution (the one decision [`Self::run_threads`]
    /// follows and [`Self::describe`] reports).
    fn route<'a>(&'a self, set: &KernelSet) -> Route<'a> {
        let g = &self.geom;
        // A dense convolution (the stem) runs faster on a requantizing dot kernel, if the set
        // has one, than on the direct kernel: its patch rows copy in whole window rows, and
        // the depth pads 7 x 7 x 3 to 148, not 7 x 7 x 4.
        let dense_fused = match &self.packed {
            // A dense convolution whose kernel requantizes its own tiles (only u8 weights).
            PackedWeights::U8 { .. } if g.groups == 1 => set.dot_requant_for(g.out_c),
            _ => None,
        };
        if let (
            Some(kernel),
            Some(shape),
            PackedWeights::U8 {
                direct: Some(w),
                bias,
                weight_sums,
                ..
            },
            None,
        ) = (set.direct, g.direct_shape(), &self.packed, dense_fused)
        {
            return Route::Direct {
                kernel,
                fused: set.direct_requant,
                shape,
                w,
                bias,
                weight_sums,
            };
        }
        Route::Dot {
            kernel: set.dot,
            fused: dense_fused,
        }
    }

    /// What runs this convolution with `isa`: the kernel set and its functions, e.g.
    /// `avx2: direct_u8_requant_avx2` or `vnni: dot_u8i8_vnni512 + requantize_avx512`.
    pub fn describe(&self, isa: Isa) -> String {
        let set = self.kernels(isa);
        let what = match self.route(&set) {
            Route::Direct { fused: Some(k), .. } => k.name.to_string(),
            Route::Direct { kernel, .. } => {
                format!("{} + {}", kernel.name, set.requant_rows.name())
            }
            Route::Dot { fused: Some(k), .. } => k.name.to_string(),
            Route::Dot { kernel, .. } => format!("{} + {}", kernel.name, set.requant_rows.name()),
        };
        format!("{}: {what}", set.isa.name())
    }

    /// Requantizes the accumulators `acc` (`[rows][channels.len()]`) of output pixels `p0..`
    /// and output `channels` into `out`, which holds the pixels from `p_start` on.
    fn write_rows(
        &self,
        requant_rows: RequantRows,
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
            return self.requant.apply_rows(requant_rows, acc, m, res, dst);
        }
        for (r, a) in acc.chunks_exact(width).enumerate() {
            let at = (p0 + r) * g.out_c + channels.start;
            let local = at - p_start * g.out_c;
            let dst = &mut out[local..local + width];
            self.requant.apply_row(
                requant_rows,
                a,
                m,
                residual.map(|rv| &rv[at..at + width]),
                dst,
            );
        }
    }
}

/// The kernels that run a convolution ([`PackedConv::route`]).
enum Route<'a> {
    /// Windows read in place from the padded input by a [`DirectU8`] kernel, or the one that
    /// requantizes its own tiles.
    Direct {
        kernel: Named<DirectU8>,
        fused: Option<Named<DirectU8Requant>>,
        shape: DirectShape,
        w: &'a [i8],
        bias: &'a [i32],
        weight_sums: &'a LayerWeightSums,
    },
    /// Patches gathered (pointwise rows read in place) for a dot kernel, or the one that
    /// requantizes its own tiles.
    Dot {
        kernel: Named<Kernel>,
        fused: Option<Named<DotU8Requant>>,
    },
}

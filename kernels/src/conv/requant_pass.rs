//! A convolution's requantization parameters, and the pass that requantizes accumulators that
//! reached memory (a kernel set without a fused kernel for the job), at the vector width the
//! set asks for ([`RequantRows`]).

use crate::dispatch::RequantRows;
use crate::requant::{requantize, LayerWeightSums, TileRequant};
use std::ops::Range;

/// The requantization of a convolution's outputs ([`crate::requant`] defines it):
/// input zero point, per-channel multiplier, output zero point, clamp bounds, and the residual
/// input's zero point and multiplier. Made by [`LayerRequant::new`], read-only after.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRequant {
    pub(crate) in_zero: i32,
    pub(crate) multiplier: Vec<f32>,
    pub(crate) out_zero: i32,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
    pub(crate) residual: Option<(i32, f32)>,
    /// [`TileRequant::nan_free`] of every channel, found once.
    nan_free: bool,
}

impl LayerRequant {
    /// Input zero point `in_zero`, per-channel `multiplier`, output zero point `out_zero`,
    /// clamp bounds `(lo, hi)` and the residual input's zero point and multiplier.
    pub fn new(
        in_zero: i32,
        multiplier: Vec<f32>,
        out_zero: i32,
        (lo, hi): (i32, i32),
        residual: Option<(i32, f32)>,
    ) -> Self {
        let nan_free = TileRequant::nan_free_multipliers(&multiplier, residual);
        LayerRequant {
            in_zero,
            multiplier,
            out_zero,
            lo,
            hi,
            residual,
            nan_free,
        }
    }

    /// The residual input's zero point and multiplier, if the outputs add one.
    pub fn residual(&self) -> Option<(i32, f32)> {
        self.residual
    }

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
    pub fn for_kernel<'a>(
        &'a self,
        (bias, weight_sums): (&'a [i32], &'a LayerWeightSums),
        channels: Range<usize>,
    ) -> TileRequant<'a> {
        TileRequant {
            bias: &bias[channels.clone()],
            weight_sums: Some(weight_sums.of(channels.clone())),
            multiplier: &self.multiplier[channels],
            zero: self.out_zero,
            lo: self.lo,
            hi: self.hi,
            residual: self.residual,
            nan_free: self.nan_free,
        }
    }

    /// [`Self::apply`] over a row of output channels (`multiplier` the row's slice), written
    /// so that the compiler vectorizes it; the same f32 operations, so the same bits, whichever
    /// vector width `how` (the kernel set's [`KernelSet::requant_rows`]) asks for: on x86_64 the
    /// same code is also compiled for AVX-512 and AVX2 (SSE2 has neither 32-bit min/max nor
    /// more than 4 lanes); on armv7 with NEON, [`crate::armv7::requantize_rows`] (the baseline
    /// there has no vector unit).
    pub fn apply_row(
        &self,
        how: RequantRows,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        match how {
            #[cfg(target_arch = "x86_64")]
            RequantRows::Avx512
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw") =>
            {
                // SAFETY: AVX-512 F/BW are present (checked just above).
                unsafe { self.apply_row_avx512(acc, multiplier, residual, out) }
            }
            #[cfg(target_arch = "x86_64")]
            RequantRows::Avx2 | RequantRows::Avx512
                if std::arch::is_x86_feature_detected!("avx2") =>
            {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { self.apply_row_avx2(acc, multiplier, residual, out) }
            }
            #[cfg(target_arch = "arm")]
            RequantRows::Armv7Neon if crate::armv7::available() => {
                let (zero, lo, hi) = self.bounds();
                let rq = (zero, lo, hi, self.residual);
                let m = &multiplier[..out.len()];
                crate::armv7::requantize_rows(acc, m, rq, residual, out)
            }
            _ => self.apply_row_body(acc, multiplier, residual, out),
        }
    }

    /// [`Self::apply_row`] over consecutive rows of `multiplier.len()` channels (`acc`, the
    /// residual input and `out` each holding whole rows one after another).
    pub fn apply_rows(
        &self,
        how: RequantRows,
        acc: &[i32],
        multiplier: &[f32],
        residual: Option<&[u8]>,
        out: &mut [u8],
    ) {
        let width = multiplier.len();
        #[cfg(target_arch = "arm")]
        if how == RequantRows::Armv7Neon && crate::armv7::available() {
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
            self.apply_row(how, a, multiplier, res, o);
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

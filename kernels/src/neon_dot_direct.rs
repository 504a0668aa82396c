//! aarch64 direct convolution kernels on the dot product (`sdot`): the [`super::neon_direct`]
//! kernels' job (grouped convolutions without a gathered patch) at four times the
//! multiply-accumulates per instruction, where the CPU has `dotprod`.
//!
//! A tile is up to 4 pixels x one block of 16 output channels (4 vectors of 4). Per tap and
//! pixel, one 16-byte load of the input (and one `eor` for `x - 128`) feeds the indexed form
//! `sdot v.4s, w.16b, x.4b[lane]`, the lane chosen at compile time by the shape:
//! * 4 channels per group (ResNeXt 32x4d's first stage): the block's 4 vectors are 4 groups whose
//!   quads are the 16 bytes in a row: vector `v` takes lane `v`;
//! * 8 channels per group: 2 groups of 8 bytes, each 2 quads: vector `v`, quad `q` takes lane
//!   `2 (v / 2) + q`;
//! * one group for the block (a multiple of 16 channels per group): the group's quads 4 at a
//!   time, quad `j` of the load for every vector.
//!
//! Shapes with a block narrower than 16 (dense convolutions of other widths) go to the `smull`
//! kernels.

use super::aarch64::bias_back;
use super::neon_dot::{available, sdot};
use super::neon_sink::{fresh_copies, with_requant_sink, AccSink, Sink, SinkExt};
use super::requant::TileRequant;
use crate::signatures::DirectShape;
use std::arch::aarch64::*;

/// Taps a call precomputes (a 7x7 window has 49); larger windows go to the `smull` kernels.
const MAX_TAPS: usize = 64;

/// `sdot` twin of [`super::generic::direct_u8`].
pub fn direct_u8_sdot(s: &DirectShape, xp: &[u8], pixels: usize, w: &[i8], acc: &mut [i32]) {
    assert!(s.fits(pixels, xp.len(), w.len(), acc.len()));
    let Some(taps) = Taps::of(s).filter(|_| available()) else {
        return super::neon_direct::direct_u8_neon(s, xp, pixels, w, acc);
    };
    let sink = AccSink {
        acc: acc.as_mut_ptr(),
        out_c: s.out_c,
    };
    // SAFETY: the CPU has `dotprod`; `fits` holds for all `pixels`: every window lies inside
    // `xp`, the weights inside `w`, and the accumulators of every pixel inside `acc`.
    unsafe { run(s, &taps, xp.as_ptr(), pixels, w.as_ptr(), &sink) }
}

/// `sdot` twin of [`super::generic::direct_u8_requant`].
pub fn direct_u8_requant_sdot(
    s: &DirectShape,
    xp: &[u8],
    pixels: usize,
    w: &[i8],
    rq: &TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
) {
    let lens = (xp.len(), w.len(), out.len(), residual.map(<[u8]>::len));
    assert!(crate::signatures::fits_direct_requant(s, pixels, lens, rq));
    let Some(taps) = Taps::of(s).filter(|_| available()) else {
        return super::neon_direct::direct_u8_requant_neon(s, xp, pixels, w, rq, residual, out);
    };
    // SAFETY: the CPU has `dotprod`; `fits_direct_requant` holds: every window inside `xp`,
    // the weights inside `w`, `out_c` channels of requantization, and `pixels * out_c` outputs
    // (and residual inputs, if any) inside `out` and `residual`.
    with_requant_sink!((rq, residual, out, s.out_c), |sink| unsafe {
        run(s, &taps, xp.as_ptr(), pixels, w.as_ptr(), sink)
    })
}

/// The offsets of a window's taps from its first byte: tap `(ky, kx)` at `ky * row + kx * in_c`.
struct Taps {
    offsets: [usize; MAX_TAPS],
    len: usize,
}

impl Taps {
    /// The taps of `s`, if the tiles take its shape: supported, whole blocks of 16 outputs,
    /// and a group read 16 bytes at a time where a block is one group (ResNeXt's wide groups
    /// have 16, 32 or 64 channels; narrower odd widths, 12 say, go to the `smull` kernels).
    fn of(s: &DirectShape) -> Option<Taps> {
        let len = s.kernel * s.kernel;
        let one_group = layout(s) == ONE_GROUP;
        if !s.supported()
            || !s.out_c.is_multiple_of(16)
            || len > MAX_TAPS
            || (one_group && !s.cin.is_multiple_of(16))
        {
            return None;
        }
        let mut offsets = [0; MAX_TAPS];
        for (t, off) in offsets[..len].iter_mut().enumerate() {
            *off = t / s.kernel * s.row + t % s.kernel * s.in_c;
        }
        Some(Taps { offsets, len })
    }
}

/// How a block's vectors find their input quads in a 16-byte load (see the module's doc).
const GROUPS4: u8 = 0;
const GROUPS8: u8 = 1;
const ONE_GROUP: u8 = 2;

/// How the tiles of `s` read their inputs (see the module's doc).
fn layout(s: &DirectShape) -> u8 {
    match (s.cin, s.cout) {
        _ if s.cout.is_multiple_of(16) || s.cout == s.out_c => ONE_GROUP,
        (4, 4) => GROUPS4,
        _ => GROUPS8,
    }
}

/// Every output of `pixels` pixels.
///
/// # Safety
/// The CPU must have `dotprod`; `s.fits(pixels, ..)` for the buffers behind `xp`, `w` and the
/// sink; `taps` are `s`'s.
#[target_feature(enable = "dotprod")]
unsafe fn run(
    s: &DirectShape,
    taps: &Taps,
    xp: *const u8,
    pixels: usize,
    w: *const i8,
    sink: &impl Sink,
) {
    let quads = s.cin / 4;
    let steps = taps.len * quads;
    let layout = layout(s);
    // SAFETY: every pointer below: blocks stay inside `out_c`, their weights inside `w`, and
    // tiles inside `pixels` (the caller's preconditions).
    unsafe {
        for b0 in (0..s.out_c).step_by(16) {
            let wb = w.add(b0 * steps * 4);
            let back = std::array::from_fn(|v| {
                let o = b0 + 4 * v;
                sink.back(o)
                    .unwrap_or_else(|| bias_back(wb, 16, 4 * v, steps).0)
            });
            let tile = Tile {
                xp: xp.add(b0 / s.cout * s.cin),
                pstride: s.stride * s.in_c,
                taps: &taps.offsets[..taps.len],
                quads,
                w: wb,
            };
            match layout {
                GROUPS4 => tile.pixels::<GROUPS4>(b0, pixels, back, sink),
                GROUPS8 => tile.pixels::<GROUPS8>(b0, pixels, back, sink),
                _ => tile.pixels::<ONE_GROUP>(b0, pixels, back, sink),
            }
        }
    }
}

/// A block of 16 outputs: its input channels from `xp` on (the first vector's group), its
/// weights `[taps * quads][16][4]` at `w`.
struct Tile<'a> {
    xp: *const u8,
    pstride: usize,
    taps: &'a [usize],
    quads: usize,
    w: *const i8,
}

impl Tile<'_> {
    /// Every pixel, in tiles of 4; a last 1-3 pixels run the same tile with the last pixel
    /// repeated, and only the real ones reach the sink.
    ///
    /// # Safety
    /// As for [`run`] (whose `dotprod` feature this inlines into).
    #[inline(always)]
    unsafe fn pixels<const L: u8>(
        &self,
        o: usize,
        pixels: usize,
        back: [int32x4_t; 4],
        sink: &impl Sink,
    ) {
        // SAFETY: the caller's preconditions; the tile's pixels are clamped below `pixels`.
        unsafe {
            let ch: [_; 4] = std::array::from_fn(|v| sink.channels(o + 4 * v, back[v]));
            let start = ch.map(|ch| sink.start(ch));
            for p in (0..pixels).step_by(4) {
                let at = std::array::from_fn(|r| (p + r).min(pixels - 1) * self.pstride);
                let a = fresh_copies(&start);
                sink.put_rows((p, (pixels - p).min(4)), o, self.sums::<L>(at, a), ch);
            }
        }
    }

    /// The weights of step `i` (tap x quads + quad), one vector per 4 outputs.
    ///
    /// # Safety
    /// Step `i` must be one of the block's.
    #[inline(always)]
    unsafe fn w(&self, i: usize) -> [int8x16_t; 4] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add((i * 16 + 4 * v) * 4)) })
    }

    /// 16 input bytes of the pixel at byte `at` from offset `off`, as i8 `x - 128`.
    ///
    /// # Safety
    /// The 16 bytes must lie inside the input.
    #[inline(always)]
    unsafe fn x16(&self, at: usize, off: usize) -> int8x16_t {
        // SAFETY: the caller's preconditions; NEON is baseline.
        unsafe {
            let v = vld1q_u8(self.xp.add(at + off));
            vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80)))
        }
    }

    /// `start` plus the sums `sum x * w - 128 * sum w` of the 4 pixels at bytes `at` of the
    /// input (a clamped tile repeats one), the 16 outputs.
    ///
    /// # Safety
    /// The pixels must be the call's; the CPU must have `dotprod` and the caller be compiled
    /// with it.
    #[inline(always)]
    unsafe fn sums<const L: u8>(
        &self,
        at: [usize; 4],
        start: [[int32x4_t; 4]; 4],
    ) -> [[int32x4_t; 4]; 4] {
        let mut a = start;
        // SAFETY: the caller's preconditions: each load is a window's bytes of the block's
        // groups (16 bytes: 4 groups of 4, 2 of 8, or 4 quads of one group), each weight a
        // step's.
        unsafe {
            for (t, &off) in self.taps.iter().enumerate() {
                match L {
                    GROUPS4 => {
                        let w = self.w(t);
                        for (ar, &p) in a.iter_mut().zip(&at) {
                            let x = self.x16(p, off);
                            ar[0] = sdot::<0>(ar[0], w[0], x);
                            ar[1] = sdot::<1>(ar[1], w[1], x);
                            ar[2] = sdot::<2>(ar[2], w[2], x);
                            ar[3] = sdot::<3>(ar[3], w[3], x);
                        }
                    }
                    GROUPS8 => {
                        let (w0, w1) = (self.w(2 * t), self.w(2 * t + 1));
                        for (ar, &p) in a.iter_mut().zip(&at) {
                            let x = self.x16(p, off);
                            ar[0] = sdot::<1>(sdot::<0>(ar[0], w0[0], x), w1[0], x);
                            ar[1] = sdot::<1>(sdot::<0>(ar[1], w0[1], x), w1[1], x);
                            ar[2] = sdot::<3>(sdot::<2>(ar[2], w0[2], x), w1[2], x);
                            ar[3] = sdot::<3>(sdot::<2>(ar[3], w0[3], x), w1[3], x);
                        }
                    }
                    _ => {
                        for q in (0..self.quads).step_by(4) {
                            // The rows' loads first, then quad by quad (with all four quads'
                            // weights at once, LLVM kept the accumulators in memory).
                            let i = t * self.quads + q;
                            let x: [int8x16_t; 4] = at.map(|p| self.x16(p, off + 4 * q));
                            let w = self.w(i);
                            for (ar, &xr) in a.iter_mut().zip(&x) {
                                for (av, &wv) in ar.iter_mut().zip(&w) {
                                    *av = sdot::<0>(*av, wv, xr);
                                }
                            }
                            let w = self.w(i + 1);
                            for (ar, &xr) in a.iter_mut().zip(&x) {
                                for (av, &wv) in ar.iter_mut().zip(&w) {
                                    *av = sdot::<1>(*av, wv, xr);
                                }
                            }
                            let w = self.w(i + 2);
                            for (ar, &xr) in a.iter_mut().zip(&x) {
                                for (av, &wv) in ar.iter_mut().zip(&w) {
                                    *av = sdot::<2>(*av, wv, xr);
                                }
                            }
                            let w = self.w(i + 3);
                            for (ar, &xr) in a.iter_mut().zip(&x) {
                                for (av, &wv) in ar.iter_mut().zip(&w) {
                                    *av = sdot::<3>(*av, wv, xr);
                                }
                            }
                        }
                    }
                }
            }
        }
        a
    }
}

//! aarch64 NEON twins of the direct convolution kernels ([`super::generic::direct_u8`] and
//! [`super::generic::direct_u8_requant`]), Cortex-A72 class (8-bit `smull`, no dot product).
//!
//! Without them the grouped convolutions gathered a patch per group (9 copies of 4 bytes per
//! pixel and group in ResNeXt's first stage), which cost more instructions than the products.
//! Here a window is a list of steps (tap and input quad of the group, offsets computed once per
//! call) and a tile of up to 4 pixels x 8 output channels walks it, two steps at a time: per
//! step, pixel and 4 outputs, the quad of input bytes repeated over 16 lanes (`ld1r`, and `eor`
//! 0x80 for `x - 128`), `smull` / `smull2` of the first step and `smlal` / `smlal2` of the
//! second into i16, one `sadalp` per half into i32 (as in [`super::aarch64`]'s dot kernel,
//! including the `128 * sum w` added back; paired steps holding -128 in the same lane run the
//! tile twice on two copies of the weights that hold none, see [`Tile::run`]).
//! The weights of a block of 16 outputs are `[steps][16][4]` ([`crate::signatures::DirectShape::weight_at`]),
//! so the 4 outputs of a vector read 16 bytes in a row per step.
//!
//! The requantizing twin hands the tile's sums to [`super::neon_sink`] and stores bytes.

use super::aarch64::{bias_back, mul, paired_step};
use super::neon_sink::{with_requant_sink, AccSink, Sink, SinkExt};
use super::requant::TileRequant;
use super::weight_split::split_weights;
use crate::signatures::DirectShape;
use std::arch::aarch64::*;
use std::arch::asm;

/// Window steps (taps x input quads of a group) a call precomputes. Beyond that (dense
/// convolutions of more than 1024 input channels per window; the convolution gives dense ones
/// to the dot kernels anyway) the generic kernel runs.
const MAX_STEPS: usize = 256;

/// Pixels per tile.
const TILE_PIXELS: usize = 4;

/// NEON twin of [`super::generic::direct_u8`].
pub fn direct_u8_neon(s: &DirectShape, xp: &[u8], pixels: usize, w: &[i8], acc: &mut [i32]) {
    assert!(s.fits(pixels, xp.len(), w.len(), acc.len()));
    let Some(steps) = Steps::of(s) else {
        return super::generic::direct_u8(s, xp, pixels, w, acc);
    };
    let sink = AccSink {
        acc: acc.as_mut_ptr(),
        out_c: s.out_c,
    };
    // SAFETY: `fits` holds for all `pixels`: every window lies inside `xp`, the weights inside
    // `w`, and the accumulators of every pixel inside `acc`.
    unsafe { run(s, &steps, xp.as_ptr(), pixels, w.as_ptr(), &sink) }
}

/// NEON twin of [`super::generic::direct_u8_requant`].
pub fn direct_u8_requant_neon(
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
    let Some(steps) = Steps::of(s) else {
        return super::generic::direct_u8_requant(s, xp, pixels, w, rq, residual, out);
    };
    // SAFETY: `fits_direct_requant` holds: every window lies inside `xp`, the weights inside
    // `w`, `out_c` channels of requantization, and `pixels * out_c` outputs (and residual
    // inputs, if any) inside `out` and `residual`.
    with_requant_sink!((rq, residual, out, s.out_c), |sink| unsafe {
        run(s, &steps, xp.as_ptr(), pixels, w.as_ptr(), sink)
    })
}

/// The offsets of a window's steps from its first byte: step `i = tap * quads + q` of tap
/// `(ky, kx)` is at `ky * row + kx * in_c + 4 q` (plus the group's first channel).
struct Steps {
    offsets: [usize; MAX_STEPS],
    len: usize,
}

impl Steps {
    /// The steps of `s`, if its shape is one the tiles take (4 output channels of a vector in
    /// one group) and its window has at most [`MAX_STEPS`] of them.
    fn of(s: &DirectShape) -> Option<Steps> {
        let quads = s.cin / 4;
        let len = s.kernel * s.kernel * quads;
        // Whole vectors of 4 outputs only: a dense convolution of other widths (which the
        // convolution gives to the dot kernels anyway) runs the generic kernel.
        if !s.supported() || len > MAX_STEPS || !s.out_c.is_multiple_of(4) {
            return None;
        }
        let mut offsets = [0; MAX_STEPS];
        // Step `(ky * kernel + kx) * quads + q`, without a division per step.
        let taps =
            (0..s.kernel).flat_map(|ky| (0..s.kernel).map(move |kx| ky * s.row + kx * s.in_c));
        let steps = taps.flat_map(|tap| (0..quads).map(move |q| tap + 4 * q));
        for (off, step) in offsets[..len].iter_mut().zip(steps) {
            *off = step;
        }
        Some(Steps { offsets, len })
    }

    fn get(&self) -> &[usize] {
        &self.offsets[..self.len]
    }
}

/// Every output of `pixels` pixels.
///
/// # Safety
/// `s.fits(pixels, ..)` for the buffers behind `xp`, `w` and the sink; `steps` are `s`'s.
unsafe fn run(
    s: &DirectShape,
    steps: &Steps,
    xp: *const u8,
    pixels: usize,
    w: *const i8,
    sink: &impl Sink,
) {
    let steps = steps.get();
    let pstride = s.stride * s.in_c;
    // SAFETY: every pointer below: blocks, tiles and pixels stay inside `out_c` and `pixels`,
    // and the weights of a block inside `w` (the caller's preconditions).
    unsafe {
        for b0 in (0..s.out_c).step_by(16) {
            let width = 16.min(s.out_c - b0);
            let wb = w.add(b0 * steps.len() * 4);
            // The group's first input channel (a shift for ResNeXt's groups, whose widths are
            // powers of two: a division per tile column is slow on the A72).
            let chan = |o: usize| match s.cout.is_power_of_two() {
                true => (o >> s.cout.trailing_zeros()) * s.cin,
                false => o / s.cout * s.cin,
            };
            for o in (0..width).step_by(8) {
                // A block's last 4 outputs run the tile with their vector repeated.
                let vectors = ((width - o) / 4).min(2);
                let last = o + 4 * (vectors - 1);
                let tile = Tile {
                    xp,
                    pstride,
                    steps,
                    chan: [chan(b0 + o), chan(b0 + last)],
                    w: wb,
                    wv: [4 * o, 4 * last],
                    wstride: width * 4,
                };
                tile.run((b0 + o, vectors), pixels, sink);
            }
        }
    }
}

/// Two vectors of 4 output channels (one group each) over the window steps: their weights at
/// `w + wv[v]`, `wstride` bytes apart from step to step, their input quads at `chan[v]` from
/// each step's offset. A block's last 4 outputs are one vector twice.
#[derive(Clone, Copy)]
struct Tile<'a> {
    xp: *const u8,
    pstride: usize,
    steps: &'a [usize],
    chan: [usize; V],
    w: *const i8,
    wv: [usize; V],
    wstride: usize,
}

/// Vectors of 4 outputs per tile.
const V: usize = 2;

impl Tile<'_> {
    /// Every pixel, in tiles of [`TILE_PIXELS`], for the first `vectors` (1 or 2) vectors of
    /// channels from `o`.
    ///
    /// # Safety
    /// As for [`run`].
    #[inline(always)]
    unsafe fn run(&self, (o, vectors): (usize, usize), pixels: usize, sink: &impl Sink) {
        // SAFETY: the caller's preconditions.
        unsafe {
            let known = (sink.back_paired(o), sink.back_paired(o + 4 * (vectors - 1)));
            let (back, low) = match known {
                (Some(b0), Some(b1)) => ([b0, b1], false),
                _ => self.bias_back(),
            };
            // Vectors in one group share their input quads; in 4-channel groups (the only
            // shape where a tile's two vectors are not in one group) they are the next 4 bytes.
            let spread = self.chan[1] != self.chan[0];
            assert!(!spread || self.chan[1] == self.chan[0] + 4);
            let o = (o, vectors);
            if !low {
                return match spread {
                    false => self.pixels::<false>(None, o, pixels, back, sink),
                    true => self.pixels::<true>(None, o, pixels, back, sink),
                };
            }
            // Paired steps holding -128 in one lane may overflow their i16: the tile runs
            // twice, on two copies of its weights that sum to them and hold no -128 (-128 is
            // -64 in both; every other weight in the first, 0 in the second), and adds the
            // two sums. Never the case for our quantizer's weights ([-127, 127]).
            let len = self.steps.len();
            let (mut most, mut rest) = ([0i8; MAX_STEPS * 32], [0i8; MAX_STEPS * 32]);
            for i in 0..len {
                for (v, &wv) in self.wv.iter().enumerate() {
                    let from = std::slice::from_raw_parts(self.w.add(i * self.wstride + wv), 16);
                    let at = 32 * i + 16 * v;
                    split_weights(from, &mut most[at..at + 16], &mut rest[at..at + 16]);
                }
            }
            let copy = |w: &[i8]| Tile {
                w: w.as_ptr(),
                wv: [0, 16],
                wstride: 32,
                ..*self
            };
            let (first, second) = (copy(&most), copy(&rest));
            match spread {
                false => first.pixels::<false>(Some(&second), o, pixels, back, sink),
                true => first.pixels::<true>(Some(&second), o, pixels, back, sink),
            }
        }
    }

    /// Every pixel, in tiles of [`TILE_PIXELS`]; a last 1-3 pixels run the same tile with the
    /// last pixel repeated, and only the real pixels and vectors reach the sink.
    ///
    /// # Safety
    /// As for [`run`].
    #[inline(always)]
    unsafe fn pixels<const SPREAD: bool>(
        &self,
        second: Option<&Tile>,
        (o, vectors): (usize, usize),
        pixels: usize,
        back: [int32x4_t; V],
        sink: &impl Sink,
    ) {
        // SAFETY: the caller's preconditions; the tile's pixels are clamped below `pixels`.
        unsafe {
            let ch0 = sink.channels(o, back[0]);
            let ch1 = if vectors == 2 {
                sink.channels(o + 4, back[1])
            } else {
                ch0
            };
            let start = [sink.start(ch0), sink.start(ch1)];
            for p in (0..pixels).step_by(TILE_PIXELS) {
                let at = std::array::from_fn(|r| (p + r).min(pixels - 1) * self.pstride);
                let mut sums = self.sums::<SPREAD>(at);
                if let Some(t) = second {
                    let more = t.sums::<SPREAD>(at);
                    for (sr, mr) in sums.iter_mut().zip(more) {
                        for (sv, mv) in sr.iter_mut().zip(mr) {
                            *sv = vaddq_s32(*sv, mv);
                        }
                    }
                }
                for sr in sums.iter_mut() {
                    for (sv, &st) in sr.iter_mut().zip(&start) {
                        *sv = vaddq_s32(*sv, st);
                    }
                }
                let rows = (pixels - p).min(TILE_PIXELS);
                if vectors == 2 {
                    sink.put_rows((p, rows), o, sums, [ch0, ch1]);
                } else {
                    sink.put_rows((p, rows), o, sums.map(|s| [s[0]]), [ch0]);
                }
            }
        }
    }

    /// `128 * sum w` of each output (what `x - 128` takes away), and whether two steps the
    /// paired loop takes together (`2j`, `2j + 1`) hold -128 in the same byte lane of a vector
    /// (then their products may overflow an i16): [`bias_back`] of each vector.
    ///
    /// # Safety
    /// The tile's weights must be readable for every step.
    #[inline(always)]
    unsafe fn bias_back(&self) -> ([int32x4_t; V], bool) {
        // SAFETY: the caller's preconditions: vector v's 16 bytes of step i at
        // `w + i * wstride + wv[v]`, both offsets multiples of 4 (whole quads).
        let each: [_; V] = std::array::from_fn(|v| unsafe {
            bias_back(self.w, self.wstride / 4, self.wv[v] / 4, self.steps.len())
        });
        (each.map(|(b, _)| b), each.iter().any(|&(_, low)| low))
    }

    /// The input quads of the pixel at byte `p` for step offset `off`, one per vector, as i8
    /// `x - 128` over 16 lanes (load and replicate, `ld1r`): one quad for both (`SPREAD`
    /// false), or (4-channel groups) the next 4 bytes for the second vector. For the steps one
    /// at a time (the paired loop is [`paired_step`]).
    ///
    /// # Safety
    /// The quads must lie inside the input.
    #[inline(always)]
    unsafe fn x<const SPREAD: bool>(&self, p: usize, off: usize) -> [int8x16_t; V] {
        // SAFETY: the caller guarantees the 4 V bytes are in bounds; NEON is baseline.
        unsafe {
            let at = self.xp.add(p + off + self.chan[0]);
            let quad = |at: *const u8| {
                let q: uint8x16_t;
                // SAFETY: the caller guarantees the 4 bytes; `ld1r` takes any alignment.
                // (Written out: from a `u32` read and `vdupq_n_u32`, LLVM merged the two
                // quads' loads into one `ldp` and then `dup`ed each.)
                asm!(
                    "ld1r {{{q:v}.4s}}, [{at}]",
                    q = out(vreg) q,
                    at = in(reg) at,
                    options(pure, readonly, nostack, preserves_flags)
                );
                vreinterpretq_s8_u8(veorq_u8(q, vdupq_n_u8(0x80)))
            };
            let x0 = quad(at);
            [x0, if SPREAD { quad(at.add(4)) } else { x0 }]
        }
    }

    /// The sums `sum x * w - 128 * sum w` of the 4 pixels at bytes `at` of the input (a
    /// clamped tile repeats one): one loop over the steps (in pairs, an odd last step after
    /// the loop: inside it, LLVM moved the accumulators around), the accumulators in
    /// registers.
    ///
    /// # Safety
    /// The pixels must be the call's.
    #[inline(always)]
    unsafe fn sums<const SPREAD: bool>(
        &self,
        at: [usize; TILE_PIXELS],
    ) -> [[int32x4_t; V]; TILE_PIXELS] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        unsafe {
            let mut a = [[[vdupq_n_s32(0); 2]; V]; TILE_PIXELS];
            let steps = self.steps;
            let mut i = 0;
            let base = at.map(|p| self.xp.add(p + self.chan[0]));
            let flip = vdupq_n_u8(0x80);
            // The first pair sets the accumulators (no zeroed registers to add to).
            let mut pairs = steps.chunks_exact(2);
            if let Some(pair) = pairs.next() {
                let (w0, w1) = (self.w(0), self.w(1));
                for (ar, &b) in a.iter_mut().zip(&base) {
                    paired_step::<SPREAD, true>(ar, (b, pair[0], pair[1]), (w0, w1), flip);
                }
                i = 2;
            }
            for pair in pairs {
                let (w0, w1) = (self.w(i), self.w(i + 1));
                for (ar, &b) in a.iter_mut().zip(&base) {
                    paired_step::<SPREAD, false>(ar, (b, pair[0], pair[1]), (w0, w1), flip);
                }
                i += 2;
            }
            // Folded by hand: `a.map(..)` was a call of `core::array::try_map` per pixel,
            // through the stack.
            let fold = |ar: &[[int32x4_t; 2]; V]| -> [int32x4_t; V] {
                std::array::from_fn(|v| vpaddq_s32(ar[v][0], ar[v][1]))
            };
            let mut sums = [fold(&a[0]), fold(&a[1]), fold(&a[2]), fold(&a[3])];
            if i < steps.len() {
                let w0 = self.w(i);
                for (sr, &p) in sums.iter_mut().zip(&at) {
                    let x = self.x::<SPREAD>(p, steps[i]);
                    for (v, sv) in sr.iter_mut().enumerate() {
                        let lo = vpaddlq_s16(mul::<0>(x[v], w0[v]));
                        let hi = vpaddlq_s16(mul::<1>(x[v], w0[v]));
                        *sv = vaddq_s32(*sv, vpaddq_s32(lo, hi));
                    }
                }
            }
            sums
        }
    }

    /// The weights of step `i`, one vector per 4 outputs.
    ///
    /// # Safety
    /// Step `i` must be one of the tile's.
    #[inline(always)]
    unsafe fn w(&self, i: usize) -> [int8x16_t; V] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add(i * self.wstride + self.wv[v])) })
    }
}

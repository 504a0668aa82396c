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
//! including the `128 * sum w` added back and the one-step path for weights holding -128).
//! The weights of a block of 16 outputs are `[steps][16][4]` ([`super::DirectShape::weight_at`]),
//! so the 4 outputs of a vector read 16 bytes in a row per step.
//!
//! The requantizing twin hands the tile's sums to [`super::neon_sink`] and stores bytes.

use super::aarch64::{mla, mul};
use super::neon_sink::{AccSink, RequantSink, Sink, SinkExt};
use super::requant::Requantize;
use super::DirectShape;
use std::arch::aarch64::*;

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
    rq: &Requantize,
    residual: Option<&[u8]>,
    out: &mut [u8],
) {
    let lens = (xp.len(), w.len(), out.len(), residual.map(<[u8]>::len));
    assert!(super::fits_direct_requant(s, pixels, lens, rq));
    let Some(steps) = Steps::of(s) else {
        return super::generic::direct_u8_requant(s, xp, pixels, w, rq, residual, out);
    };
    let sink = RequantSink::new(rq, residual, out, s.out_c);
    // SAFETY: `fits_direct_requant` holds: every window lies inside `xp`, the weights inside
    // `w`, `out_c` channels of requantization, and `pixels * out_c` outputs (and residual
    // inputs, if any) inside `out` and `residual`.
    unsafe { run(s, &steps, xp.as_ptr(), pixels, w.as_ptr(), &sink) }
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
        if !s.supported() || len > MAX_STEPS || !(s.cout == s.out_c || s.cout.is_multiple_of(4)) {
            return None;
        }
        let mut offsets = [0; MAX_STEPS];
        for (i, off) in offsets[..len].iter_mut().enumerate() {
            let (tap, q) = (i / quads, i % quads);
            *off = tap / s.kernel * s.row + tap % s.kernel * s.in_c + 4 * q;
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
    // SAFETY (every pointer below): blocks, tiles and pixels stay inside `out_c` and `pixels`,
    // and the weights of a block inside `w` (the caller's preconditions).
    unsafe {
        for b0 in (0..s.out_c).step_by(16) {
            let width = 16.min(s.out_c - b0);
            let wb = w.add(b0 * steps.len() * 4);
            let chan = |o: usize| o / s.cout * s.cin;
            let mut o = 0;
            while o + 8 <= width {
                let tile = Tile {
                    xp,
                    pstride,
                    steps,
                    chan: [chan(b0 + o), chan(b0 + o + 4)],
                    w: wb.add(o * 4),
                    wstride: width * 4,
                };
                tile.run(b0 + o, pixels, sink);
                o += 8;
            }
            if o + 4 <= width {
                let tile = Tile {
                    xp,
                    pstride,
                    steps,
                    chan: [chan(b0 + o)],
                    w: wb.add(o * 4),
                    wstride: width * 4,
                };
                tile.run(b0 + o, pixels, sink);
                o += 4;
            }
            // A dense convolution's last channels (fewer than 4).
            for o in b0 + o..b0 + width {
                for p in 0..pixels {
                    let x = xp.add(p * pstride + chan(o));
                    let mut sum = 0i32;
                    for (i, &off) in steps.iter().enumerate() {
                        let wq = wb.add((i * width + o - b0) * 4);
                        for t in 0..4 {
                            sum += *x.add(off + t) as i32 * *wq.add(t) as i32;
                        }
                    }
                    sink.put1(p, o, sum);
                }
            }
        }
    }
}

/// `V` vectors of 4 output channels (one group each) over the window steps: their weights
/// `wstride` bytes apart from step to step, their input quads at `chan[v]` from each step's
/// offset.
struct Tile<'a, const V: usize> {
    xp: *const u8,
    pstride: usize,
    steps: &'a [usize],
    chan: [usize; V],
    w: *const i8,
    wstride: usize,
}

impl<const V: usize> Tile<'_, V> {
    /// Every pixel, in tiles of [`TILE_PIXELS`], for channels from `o`.
    ///
    /// # Safety
    /// As for [`run`].
    #[inline(always)]
    unsafe fn run(&self, o: usize, pixels: usize, sink: &impl Sink) {
        // SAFETY: the caller's preconditions.
        unsafe {
            let (back, low) = self.bias_back();
            // Vectors in one group share their input quads; in 4-channel groups (the only
            // shape where a tile's two vectors are not in one group) they are the next 4 bytes.
            let spread = self.chan[V - 1] != self.chan[0];
            assert!(!spread || (V == 2 && self.chan[1] == self.chan[0] + 4));
            match (low, spread) {
                (false, false) => self.pixels::<true, false>(o, pixels, back, sink),
                (false, true) => self.pixels::<true, true>(o, pixels, back, sink),
                (true, false) => self.pixels::<false, false>(o, pixels, back, sink),
                (true, true) => self.pixels::<false, true>(o, pixels, back, sink),
            }
        }
    }

    /// # Safety
    /// As for [`run`].
    #[inline(always)]
    unsafe fn pixels<const PAIRED: bool, const SPREAD: bool>(
        &self,
        o: usize,
        pixels: usize,
        back: [int32x4_t; V],
        sink: &impl Sink,
    ) {
        // SAFETY: the caller's preconditions; pixels p..p + R < pixels.
        unsafe {
            let mut p = 0;
            while p + TILE_PIXELS <= pixels {
                sink.put_all(p, o, self.sums::<4, PAIRED, SPREAD>(p), back);
                p += TILE_PIXELS;
            }
            match pixels - p {
                3 => sink.put_all(p, o, self.sums::<3, PAIRED, SPREAD>(p), back),
                2 => sink.put_all(p, o, self.sums::<2, PAIRED, SPREAD>(p), back),
                1 => sink.put_all(p, o, self.sums::<1, PAIRED, SPREAD>(p), back),
                _ => {}
            }
        }
    }

    /// `128 * sum w` of each output (what `x - 128` takes away), and whether any weight is
    /// -128 (then two products may not share an i16).
    ///
    /// # Safety
    /// The tile's weights must be readable for every step.
    #[inline(always)]
    unsafe fn bias_back(&self) -> ([int32x4_t; V], bool) {
        // SAFETY: the caller's preconditions; NEON is baseline.
        unsafe {
            let mut s = [vdupq_n_s32(0); V];
            let mut low = vdupq_n_s8(0);
            for i in 0..self.steps.len() {
                for (v, sv) in s.iter_mut().enumerate() {
                    let wv = vld1q_s8(self.w.add(i * self.wstride + 16 * v));
                    *sv = vpadalq_s16(*sv, vpaddlq_s8(wv));
                    low = vminq_s8(low, wv);
                }
            }
            (s.map(|v| vshlq_n_s32::<7>(v)), vminvq_s8(low) == i8::MIN)
        }
    }

    /// The input quads of pixel `p` at step offset `off`, one per vector, as i8 `x - 128`
    /// over 16 lanes: one quad for all (`SPREAD` false), or (4-channel groups, `V` = 2) the
    /// next 4 bytes for the second vector, from one 8-byte load.
    ///
    /// # Safety
    /// The quads must lie inside the input.
    #[inline(always)]
    unsafe fn x<const SPREAD: bool>(&self, p: usize, off: usize) -> [int8x16_t; V] {
        // SAFETY: the caller guarantees the 4 V bytes are in bounds; NEON is baseline.
        unsafe {
            let at = self.xp.add(p * self.pstride + off + self.chan[0]);
            if SPREAD {
                let d = vreinterpret_u32_u8(veor_u8(vld1_u8(at), vdup_n_u8(0x80)));
                let (x0, x1) = (vdupq_lane_u32::<0>(d), vdupq_lane_u32::<1>(d));
                std::array::from_fn(|v| vreinterpretq_s8_u32(if v == 0 { x0 } else { x1 }))
            } else {
                let q = (at as *const u32).read_unaligned();
                let x = veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(q)), vdupq_n_u8(0x80));
                [vreinterpretq_s8_u8(x); V]
            }
        }
    }

    /// The sums `sum x * w - 128 * sum w` of pixels `p0..p0 + R`: one loop over the steps
    /// (in pairs, an odd last step after the loop: inside it, LLVM moved the accumulators
    /// around), the accumulators in registers.
    ///
    /// # Safety
    /// Pixels `p0..p0 + R` must be the call's.
    #[inline(always)]
    unsafe fn sums<const R: usize, const PAIRED: bool, const SPREAD: bool>(
        &self,
        p0: usize,
    ) -> [[int32x4_t; V]; R] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        unsafe {
            let mut a = [[[vdupq_n_s32(0); 2]; V]; R];
            let steps = self.steps;
            let mut i = 0;
            if !PAIRED {
                while i < steps.len() {
                    let w0 = self.w(i);
                    for (r, ar) in a.iter_mut().enumerate() {
                        let x = self.x::<SPREAD>(p0 + r, steps[i]);
                        for v in 0..V {
                            ar[v][0] = vpadalq_s16(ar[v][0], mul::<0>(x[v], w0[v]));
                            ar[v][1] = vpadalq_s16(ar[v][1], mul::<1>(x[v], w0[v]));
                        }
                    }
                    i += 1;
                }
            } else {
                while i + 2 <= steps.len() {
                    let (w0, w1) = (self.w(i), self.w(i + 1));
                    let (o0, o1) = (steps[i], steps[i + 1]);
                    for (r, ar) in a.iter_mut().enumerate() {
                        let (x0, x1) = (self.x::<SPREAD>(p0 + r, o0), self.x::<SPREAD>(p0 + r, o1));
                        for v in 0..V {
                            let (x0, x1) = (x0[v], x1[v]);
                            ar[v][0] =
                                vpadalq_s16(ar[v][0], mla::<0>(mul::<0>(x0, w0[v]), x1, w1[v]));
                            ar[v][1] =
                                vpadalq_s16(ar[v][1], mla::<1>(mul::<1>(x0, w0[v]), x1, w1[v]));
                        }
                    }
                    i += 2;
                }
            }
            let mut sums = a.map(|ar| ar.map(|av| vpaddq_s32(av[0], av[1])));
            if PAIRED && i < steps.len() {
                let w0 = self.w(i);
                for (r, sr) in sums.iter_mut().enumerate() {
                    let x = self.x::<SPREAD>(p0 + r, steps[i]);
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
        std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add(i * self.wstride + 16 * v)) })
    }
}

//! Where the aarch64 kernels' tiles put their sums ([`Sink`]): added to i32 accumulators, or
//! requantized into bytes by [`NeonRequant`], which is [`super::requant`] on four NEON lanes: the same f32 operations in the same order (`scvtf`, `fmul`, the residual's `fmul` and
//! `fadd`, no fused multiply-add), the clamp to +-2^22 with `fmax` / `fmin` (a NaN stays NaN),
//! then `fcvtns`, which rounds ties to even as [`super::requant::round_half_even`] does and
//! turns a NaN into 0 as it does. Zero point and bounds are added and applied in i32, and the
//! low byte of each lane is the output (`as u8`).

use super::requant::{TileRequant, LIMIT};
use std::arch::aarch64::*;

/// A [`TileRequant`] with its per-call constants in vector registers.
pub(crate) struct NeonRequant<'a> {
    rq: &'a TileRequant<'a>,
    zero: int32x4_t,
    lo: int32x4_t,
    hi: int32x4_t,
    residual_zero: int32x4_t,
    residual_multiplier: float32x4_t,
    /// Whether the residual term is added: the requantization has one and the call passed
    /// the residual inputs (as [`TileRequant::output`], which zips the two).
    with_residual: bool,
}

impl<'a> NeonRequant<'a> {
    /// `rq`, with the residual term only if `residual_inputs` (the call has them).
    #[inline(always)]
    pub(crate) fn new(rq: &'a TileRequant<'a>, residual_inputs: bool) -> Self {
        let (rz, rm) = rq.residual.unwrap_or((0, 0.0));
        // SAFETY: NEON is baseline on aarch64; register operations only.
        unsafe {
            NeonRequant {
                rq,
                zero: vdupq_n_s32(rq.zero),
                lo: vdupq_n_s32(rq.lo),
                hi: vdupq_n_s32(rq.hi),
                residual_zero: vdupq_n_s32(rz),
                residual_multiplier: vdupq_n_f32(rm),
                with_residual: residual_inputs && rq.residual.is_some(),
            }
        }
    }

    /// The outputs of channels `o..o + 4` for their sums `acc` (bias not added), as i32 lanes
    /// within `[lo, hi]`; `residual` points at the four residual inputs of those channels
    /// (read only when the requantization has a residual and the call residual inputs).
    ///
    /// # Safety
    /// `o + 4 <= n` for the `n` channels the [`TileRequant`] holds, and `residual` must point
    /// at 4 readable bytes when [`NeonRequant::new`] was told the call has residual inputs.
    #[inline(always)]
    pub(crate) unsafe fn lanes(&self, acc: int32x4_t, o: usize, residual: *const u8) -> int32x4_t {
        // SAFETY: the caller guarantees the channels and residual bytes are in bounds; NEON
        // is baseline.
        unsafe {
            let bias = vld1q_s32(self.rq.bias.as_ptr().add(o));
            let m = vld1q_f32(self.rq.multiplier.as_ptr().add(o));
            let mut v = vmulq_f32(vcvtq_f32_s32(vaddq_s32(acc, bias)), m);
            if self.with_residual {
                let r = vdup_n_u32((residual as *const u32).read_unaligned());
                let r = vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(r))));
                let r = vsubq_s32(vreinterpretq_s32_u32(r), self.residual_zero);
                v = vaddq_f32(v, vmulq_f32(vcvtq_f32_s32(r), self.residual_multiplier));
            }
            let v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(-LIMIT)), vdupq_n_f32(LIMIT));
            let q = vaddq_s32(vcvtnq_s32_f32(v), self.zero);
            vminq_s32(vmaxq_s32(q, self.lo), self.hi)
        }
    }

    /// Four outputs' low bytes, stored at `out`.
    ///
    /// # Safety
    /// `out` must point at 4 writable bytes.
    #[inline(always)]
    pub(crate) unsafe fn store4(out: *mut u8, v: int32x4_t) {
        // SAFETY: the caller guarantees the 4 bytes; NEON is baseline.
        unsafe {
            let h = vmovn_s32(v);
            let b = vmovn_s16(vcombine_s16(h, h));
            let word = vget_lane_u32::<0>(vreinterpret_u32_s8(b));
            (out as *mut u32).write_unaligned(word);
        }
    }

    /// Eight outputs' low bytes (`a` then `b`), stored at `out`.
    ///
    /// # Safety
    /// `out` must point at 8 writable bytes.
    #[inline(always)]
    pub(crate) unsafe fn store8(out: *mut u8, a: int32x4_t, b: int32x4_t) {
        // SAFETY: the caller guarantees the 8 bytes; NEON is baseline.
        unsafe {
            let h = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
            vst1_u8(out, vreinterpret_u8_s8(vmovn_s16(h)));
        }
    }

    /// The scalar definition, for the channels a tile leaves over.
    #[inline(always)]
    pub(crate) fn output(&self, o: usize, acc: i32, residual: Option<u8>) -> u8 {
        self.rq.output(o, acc, residual)
    }
}

/// Where a tile's sums go: rows (output pixels) of `out_c` values (the row stride; a row may
/// hold more than the kernel's outputs).
pub(crate) trait Sink {
    /// The sums of row `p`, channels `o..o + 4 V`.
    ///
    /// # Safety
    /// `p` must be one of the call's rows and `o + 4 V` within its outputs.
    unsafe fn put<const V: usize>(&self, p: usize, o: usize, sums: [int32x4_t; V]);

    /// The sum of row `p`, channel `o` (the channels a vector leaves over).
    ///
    /// # Safety
    /// As for [`Sink::put`], with one channel.
    unsafe fn put1(&self, p: usize, o: usize, sum: i32);
}

/// Added to accumulators, rows `out_c` apart.
pub(crate) struct AccSink {
    pub(crate) acc: *mut i32,
    pub(crate) out_c: usize,
}

impl Sink for AccSink {
    #[inline(always)]
    unsafe fn put<const V: usize>(&self, p: usize, o: usize, sums: [int32x4_t; V]) {
        // SAFETY: the caller guarantees the accumulators are in bounds; NEON is baseline.
        unsafe {
            for (v, sum) in sums.into_iter().enumerate() {
                let a = self.acc.add(p * self.out_c + o + 4 * v);
                vst1q_s32(a, vaddq_s32(vld1q_s32(a), sum));
            }
        }
    }

    #[inline(always)]
    unsafe fn put1(&self, p: usize, o: usize, sum: i32) {
        // SAFETY: the caller guarantees the accumulator is in bounds.
        unsafe { *self.acc.add(p * self.out_c + o) += sum }
    }
}

/// Requantized into bytes, rows `out_c` apart, with residual inputs laid out alike.
pub(crate) struct RequantSink<'a> {
    pub(crate) rq: NeonRequant<'a>,
    pub(crate) residual: *const u8,
    pub(crate) out: *mut u8,
    pub(crate) out_c: usize,
}

impl<'a> RequantSink<'a> {
    /// Requantized by `rq` into `out`, rows `out_c` apart, with the residual inputs (if any)
    /// laid out alike. The kernel that makes it has checked the buffers' lengths.
    pub(crate) fn new(
        rq: &'a TileRequant<'a>,
        residual: Option<&[u8]>,
        out: &mut [u8],
        out_c: usize,
    ) -> Self {
        RequantSink {
            rq: NeonRequant::new(rq, residual.is_some()),
            residual: residual.map_or(std::ptr::null(), <[u8]>::as_ptr),
            out: out.as_mut_ptr(),
            out_c,
        }
    }
}

impl Sink for RequantSink<'_> {
    #[inline(always)]
    unsafe fn put<const V: usize>(&self, p: usize, o: usize, sums: [int32x4_t; V]) {
        let at = p * self.out_c + o;
        // SAFETY: the caller guarantees the outputs (and residual inputs, which are only read
        // when there are some) are in bounds.
        unsafe {
            let lanes: [int32x4_t; V] = std::array::from_fn(|v| {
                let res = self.residual.wrapping_add(at + 4 * v);
                self.rq.lanes(sums[v], o + 4 * v, res)
            });
            if V.is_multiple_of(2) {
                for v in (0..V).step_by(2) {
                    NeonRequant::store8(self.out.add(at + 4 * v), lanes[v], lanes[v + 1]);
                }
            } else {
                for (v, l) in lanes.into_iter().enumerate() {
                    NeonRequant::store4(self.out.add(at + 4 * v), l);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn put1(&self, p: usize, o: usize, sum: i32) {
        let at = p * self.out_c + o;
        // SAFETY: the caller guarantees the output (and residual input, if any) is in bounds.
        unsafe {
            let res = (!self.residual.is_null()).then(|| *self.residual.add(at));
            *self.out.add(at) = self.rq.output(o, sum, res);
        }
    }
}

impl<S: Sink> SinkExt for S {}

/// A tile's sums with the `128 * sum w` added back, per pixel.
pub(crate) trait SinkExt: Sink {
    /// The first `rows` rows of a tile's sums (the others are a clamped tile's repeats of its
    /// last row), with the `128 * sum w` added back.
    ///
    /// # Safety
    /// As for [`Sink::put`], for rows `p0..p0 + rows`.
    #[inline(always)]
    unsafe fn put_rows<const R: usize, const V: usize>(
        &self,
        p0: usize,
        rows: usize,
        o: usize,
        sums: [[int32x4_t; V]; R],
        back: [int32x4_t; V],
    ) {
        // SAFETY: the caller's preconditions; NEON is baseline.
        unsafe {
            for (r, s) in sums.into_iter().enumerate().take(rows) {
                let mut s = s;
                for (sv, b) in s.iter_mut().zip(back) {
                    *sv = vaddq_s32(*sv, b);
                }
                self.put(p0 + r, o, s);
            }
        }
    }
}

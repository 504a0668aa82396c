//! [`super::requant`] on four NEON lanes, for the aarch64 kernels that requantize their own
//! tiles: the same f32 operations in the same order (`scvtf`, `fmul`, the residual's `fmul` and
//! `fadd`, no fused multiply-add), the clamp to +-2^22 with `fmax` / `fmin` (a NaN stays NaN),
//! then `fcvtns`, which rounds ties to even as [`super::requant::round_half_even`] does and
//! turns a NaN into 0 as it does. Zero point and bounds are added and applied in i32, and the
//! low byte of each lane is the output (`as u8`).

use super::requant::{Requantize, LIMIT};
use std::arch::aarch64::*;

/// A [`Requantize`] with its per-call constants in vector registers.
pub(crate) struct Requant4<'a> {
    rq: &'a Requantize<'a>,
    zero: int32x4_t,
    lo: int32x4_t,
    hi: int32x4_t,
    residual_zero: int32x4_t,
    residual_multiplier: float32x4_t,
}

impl<'a> Requant4<'a> {
    #[inline(always)]
    pub(crate) fn new(rq: &'a Requantize<'a>) -> Self {
        let (rz, rm) = rq.residual.unwrap_or((0, 0.0));
        // SAFETY: NEON is baseline on aarch64; register operations only.
        unsafe {
            Requant4 {
                rq,
                zero: vdupq_n_s32(rq.zero),
                lo: vdupq_n_s32(rq.lo),
                hi: vdupq_n_s32(rq.hi),
                residual_zero: vdupq_n_s32(rz),
                residual_multiplier: vdupq_n_f32(rm),
            }
        }
    }

    /// The outputs of channels `o..o + 4` for their sums `acc` (bias not added), as i32 lanes
    /// within `[lo, hi]`; `residual` points at the four residual inputs of those channels
    /// (read only when the requantization has a residual).
    ///
    /// # Safety
    /// `o + 4 <= n` for the `n` channels the [`Requantize`] holds, and `residual` must point
    /// at 4 readable bytes when the requantization has a residual.
    #[inline(always)]
    pub(crate) unsafe fn lanes(&self, acc: int32x4_t, o: usize, residual: *const u8) -> int32x4_t {
        // SAFETY: the caller guarantees the channels and residual bytes are in bounds; NEON
        // is baseline.
        unsafe {
            let bias = vld1q_s32(self.rq.bias.as_ptr().add(o));
            let m = vld1q_f32(self.rq.multiplier.as_ptr().add(o));
            let mut v = vmulq_f32(vcvtq_f32_s32(vaddq_s32(acc, bias)), m);
            if self.rq.residual.is_some() {
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

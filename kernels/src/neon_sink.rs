//! Where the aarch64 kernels' tiles put their sums ([`Sink`]): added to i32 accumulators, or
//! requantized into bytes by [`NeonRequant`], which is [`super::requant`] on four NEON lanes:
//! the same f32 operations in the same order (the accumulator as f32, `fmul`, the residual's
//! `fmul` and `fadd`, no fused multiply-add). In general ([`NeonRequant::lanes`]) `scvtf`, the
//! clamp to +-2^22 with `fmax` / `fmin` (a NaN stays NaN), then `fcvtns`, which rounds ties to
//! even as [`super::requant::round_half_even`] does and turns a NaN into 0 as it does; zero
//! point and bounds are added and applied in i32, and the low byte of each lane is the output
//! (`as u8`). For the bounds of every model ([`NeonRequant::byte_path`],
//! [`NeonRequant::bytes`]): the rounding of `round_half_even` itself (adding 1.5 * 2^23),
//! saturating narrows, accumulators known to lie within +-2^22 and residual inputs turned into
//! f32 by putting them under the bits of 1.5 * 2^23.
//!
//! The sums a sink takes start from the bias (and `128 * sum w`, [`Sink::start`]): the `sdot`
//! tiles load their accumulators with it ([`fresh_copies`]), the `smull` ones add it as they
//! fold.

use super::requant::{TileRequant, LIMIT, MAGIC};
use std::arch::aarch64::*;

/// Whether [`RequantSink`] turns residual inputs into f32 by [`NeonRequant::residual_table`]
/// where it can: where the build's CPU has the dot product (the A76 class, whose table look-up
/// is one micro-op of either vector pipe; the A72 takes five), else by widening
/// ([`NeonRequant::residual_widened`], [`NeonRequant::residual_lanes`]). The same values either
/// way; the kernel tests run both (the rpi4 and rpi5 builds).
const TABLE_RESIDUAL: bool = cfg!(target_feature = "dotprod");

/// A [`TileRequant`] with its per-call constants in vector registers.
#[derive(Clone, Copy)]
pub(crate) struct NeonRequant<'a> {
    rq: &'a TileRequant<'a>,
    zero: int32x4_t,
    lo: int32x4_t,
    hi: int32x4_t,
    /// `lo` and `hi` in every byte (used only with bounds within a byte).
    lo8: uint8x16_t,
    hi8: uint8x16_t,
    residual_zero: int32x4_t,
    residual_multiplier: float32x4_t,
    /// The bits of [`MAGIC`] less the zero point (for [`NeonRequant::bytes`]).
    magic_less_zero: int32x4_t,
    /// [`MAGIC`] plus the residual zero point (for [`NeonRequant::residual_table`] and
    /// [`NeonRequant::residual_widened`]).
    residual_magic: float32x4_t,
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
                lo8: vdupq_n_u8(rq.lo.clamp(0, 255) as u8),
                hi8: vdupq_n_u8(rq.hi.clamp(0, 255) as u8),
                residual_zero: vdupq_n_s32(rz),
                residual_multiplier: vdupq_n_f32(rm),
                magic_less_zero: vdupq_n_s32((MAGIC.to_bits() as i32).wrapping_sub(rq.zero)),
                residual_magic: vdupq_n_f32(MAGIC + rz as f32),
                with_residual: residual_inputs && rq.residual.is_some(),
            }
        }
    }

    /// The outputs of four channels for their accumulators `acc` (bias included) and
    /// multipliers `m`, as i32 lanes within `[lo, hi]`; `residual` is `(r - residual zero) as
    /// f32` of their residual inputs `r` (added only with `RES`, which must be
    /// [`NeonRequant::with_residual`]).
    #[inline(always)]
    pub(crate) fn lanes<const RES: bool>(
        &self,
        (acc, m): (int32x4_t, float32x4_t),
        residual: float32x4_t,
    ) -> int32x4_t {
        // SAFETY: NEON is baseline; register operations only.
        unsafe {
            let v = self.scaled::<RES, false>(acc, m, residual);
            let v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(-LIMIT)), vdupq_n_f32(LIMIT));
            let q = vaddq_s32(vcvtnq_s32_f32(v), self.zero);
            vminq_s32(vmaxq_s32(q, self.lo), self.hi)
        }
    }

    /// `acc * m`, plus `residual * residual multiplier` with `RES`: the f32 part of the
    /// definition. With `NARROW`, `acc` holds the bits of `1.5 * 2^23 + acc` (an accumulator
    /// within +-2^22 plus those bits: an f32 with `acc` in its low bits, exactly `1.5 * 2^23 +
    /// acc`), and subtracting `1.5 * 2^23` gives `acc as f32` in one operation of either vector
    /// pipe, where `scvtf` is two of the A76's V0 alone.
    #[inline(always)]
    fn scaled<const RES: bool, const NARROW: bool>(
        &self,
        acc: int32x4_t,
        m: float32x4_t,
        residual: float32x4_t,
    ) -> float32x4_t {
        // SAFETY: NEON is baseline; register operations only.
        unsafe {
            let a = match NARROW {
                true => vsubq_f32(vreinterpretq_f32_s32(acc), vdupq_n_f32(MAGIC)),
                false => vcvtq_f32_s32(acc),
            };
            let mut v = vmulq_f32(a, m);
            if RES {
                v = vaddq_f32(v, vmulq_f32(residual, self.residual_multiplier));
            }
            v
        }
    }

    /// `(r - residual zero) as f32` of the four residual inputs `r` at `residual`.
    ///
    /// # Safety
    /// `residual` must point at 4 readable bytes.
    #[inline(always)]
    pub(crate) unsafe fn residual_lanes(&self, residual: *const u8) -> float32x4_t {
        // SAFETY: the caller guarantees the bytes; NEON is baseline.
        unsafe {
            let r = vdup_n_u32((residual as *const u32).read_unaligned());
            let r = vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(r))));
            vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(r), self.residual_zero))
        }
    }

    /// [`NeonRequant::residual_lanes`] of the 8 residual inputs `r`, for
    /// [`NeonRequant::byte_path`]: widened to 32 bits (three widenings for 8 lanes), each
    /// under the bits of 1.5 * 2^23 by an `orr`, then as [`NeonRequant::residual_table`]
    /// (on the A72, 4.5 micro-ops per 4 inputs, where `ld1r`, two widenings, `sub` and
    /// `scvtf` take 6).
    #[inline(always)]
    fn residual_widened(&self, r: uint8x8_t) -> [float32x4_t; 2] {
        // SAFETY: NEON is baseline; register operations only.
        unsafe {
            let h = vmovl_u8(r);
            let high = vdupq_n_u32(MAGIC.to_bits());
            let f = |w: uint32x4_t| {
                vsubq_f32(
                    vreinterpretq_f32_u32(vorrq_u32(w, high)),
                    self.residual_magic,
                )
            };
            [f(vmovl_u16(vget_low_u16(h))), f(vmovl_high_u16(h))]
        }
    }

    /// [`NeonRequant::residual_lanes`] of residual inputs `4 j..4 j + 4` of the 16 in `r`,
    /// for [`NeonRequant::byte_path`] (a residual zero point within +-2^21): one table
    /// look-up puts each byte under the bits of 1.5 * 2^23 (`0x4B40_00rr` is `1.5 * 2^23 +
    /// r`), and subtracting `1.5 * 2^23 + zero` (an integer below 2^24, exact in f32) leaves
    /// `r - zero` exactly: two operations of either vector pipe of the A76, where widening
    /// and `scvtf` take five, three of them bound to one pipe (the A72 spends five
    /// micro-ops on the look-up alone: [`TABLE_RESIDUAL`]).
    #[inline(always)]
    fn residual_table(&self, r: uint8x16_t, j: usize) -> float32x4_t {
        // The byte of lane `l` is input `4 j + l`, the others those of 1.5 * 2^23 (0x4B4000)
        // from the second table register.
        const AT: [[u8; 16]; 4] = {
            let mut at = [[0u8; 16]; 4];
            let mut j = 0;
            while j < 4 {
                let mut l = 0;
                while l < 4 {
                    at[j][4 * l] = (4 * j + l) as u8;
                    at[j][4 * l + 1] = 16;
                    at[j][4 * l + 2] = 17;
                    at[j][4 * l + 3] = 18;
                    l += 1;
                }
                j += 1;
            }
            at
        };
        const HIGH: [u8; 16] = [0x00, 0x40, 0x4B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // SAFETY: NEON is baseline; the loads read the constants above.
        unsafe {
            let table = uint8x16x2_t(r, vld1q_u8(HIGH.as_ptr()));
            let bits = vqtbl2q_u8(table, vld1q_u8(AT[j].as_ptr()));
            vsubq_f32(vreinterpretq_f32_u8(bits), self.residual_magic)
        }
    }

    /// Whether the call's accumulators are within +-2^22 ([`super::requant::WeightSums::narrow`]), for the byte
    /// path ([`NeonRequant::byte_path`]): the `NARROW` of [`NeonRequant::bytes`].
    #[inline(always)]
    pub(crate) fn narrow(&self) -> bool {
        self.byte_path() && self.rq.weight_sums.is_some_and(|ws| ws.narrow)
    }

    /// Whether the residual term is added (the `RES` of the methods that add it).
    #[inline(always)]
    pub(crate) fn with_residual(&self) -> bool {
        self.with_residual
    }

    /// Whether [`NeonRequant::bytes`] computes the definition (and
    /// [`NeonRequant::residual_table`] the residual term): bounds within a byte, zero points
    /// within +-2^21 and no NaN among the f32 values ([`TileRequant::nan_free`]), as in every
    /// model (the kernels' tests also try others).
    #[inline(always)]
    pub(crate) fn byte_path(&self) -> bool {
        let rq = self.rq;
        0 <= rq.lo
            && rq.lo <= rq.hi
            && rq.hi <= 255
            && rq.zero.unsigned_abs() <= 1 << 21
            && rq
                .residual
                .is_none_or(|(rz, _)| rz.unsigned_abs() <= 1 << 21)
            && rq.nan_free
    }

    /// The outputs of four channels (as [`NeonRequant::lanes`]) before the clamp, for
    /// [`NeonRequant::byte_path`]: `v + 1.5 * 2^23` in f32 holds `1.5 * 2^23 + round(v)`
    /// (ties to even) for `|v| <= 2^22`, so its bits less those of `1.5 * 2^23`, less the zero
    /// point with saturation, are the output before the clamp, in two operations of either
    /// vector pipe (`fcvtns` is two of the A76's V0 alone). Beyond +-2^22 (no clamp here)
    /// those bits stay beyond the byte's bounds on their own side, as the clamped value does
    /// (positive floats' bits grow with them; a sum at or below zero has the bits of +0 or the
    /// sign bit, which the saturating subtraction leaves negative); the saturating narrows and the
    /// byte clamp ([`NeonRequant::store8_bytes`]) then give the definition's bytes. A NaN would
    /// not give the definition's zero point: none is there.
    /// With `NARROW` ([`NeonRequant::narrow`]), `acc` holds the bits of `1.5 * 2^23 + acc`
    /// (see [`NeonRequant::scaled`]).
    #[inline(always)]
    pub(crate) fn bytes<const RES: bool, const NARROW: bool>(
        &self,
        (acc, m): (int32x4_t, float32x4_t),
        residual: float32x4_t,
    ) -> int32x4_t {
        // SAFETY: NEON is baseline; register operations only.
        unsafe {
            let v = self.scaled::<RES, NARROW>(acc, m, residual);
            let t = vaddq_f32(v, vdupq_n_f32(MAGIC));
            vqsubq_s32(vreinterpretq_s32_f32(t), self.magic_less_zero)
        }
    }

    /// Eight outputs of [`NeonRequant::bytes`] (`a` then `b`) narrowed with saturation,
    /// clamped to `[lo, hi]` and stored at `out`.
    ///
    /// # Safety
    /// `out` must point at 8 writable bytes; the bounds within a byte.
    #[inline(always)]
    pub(crate) unsafe fn store8_bytes(&self, out: *mut u8, a: int32x4_t, b: int32x4_t) {
        // SAFETY: the caller guarantees the 8 bytes; NEON is baseline.
        unsafe {
            let h = vqmovn_high_s32(vqmovn_s32(a), b);
            let (lo8, hi8) = (vget_low_u8(self.lo8), vget_low_u8(self.hi8));
            let y = vmin_u8(vmax_u8(vqmovun_s16(h), lo8), hi8);
            vst1_u8(out, y);
        }
    }

    /// Sixteen outputs of [`NeonRequant::bytes`] (`q[0]` to `q[3]`), as
    /// [`NeonRequant::store8_bytes`] does eight, with one byte narrow and clamp for all 16.
    ///
    /// # Safety
    /// `out` must point at 16 writable bytes; the bounds within a byte.
    #[inline(always)]
    pub(crate) unsafe fn store16_bytes(&self, out: *mut u8, q: [int32x4_t; 4]) {
        // SAFETY: the caller guarantees the 16 bytes; NEON is baseline.
        unsafe {
            let lo = vqmovun_s16(vqmovn_high_s32(vqmovn_s32(q[0]), q[1]));
            let y = vqmovun_high_s16(lo, vqmovn_high_s32(vqmovn_s32(q[2]), q[3]));
            vst1q_u8(out, vminq_u8(vmaxq_u8(y, self.lo8), self.hi8));
        }
    }

    /// Four outputs of [`NeonRequant::bytes`], as [`NeonRequant::store8_bytes`] does eight.
    ///
    /// # Safety
    /// `out` must point at 4 writable bytes; the bounds within a byte.
    #[inline(always)]
    pub(crate) unsafe fn store4_bytes(&self, out: *mut u8, a: int32x4_t) {
        // SAFETY: the caller guarantees the 4 bytes; NEON is baseline.
        unsafe {
            let h = vqmovn_s32(a);
            let (lo8, hi8) = (vget_low_u8(self.lo8), vget_low_u8(self.hi8));
            let y = vmin_u8(vmax_u8(vqmovun_s16(vcombine_s16(h, h)), lo8), hi8);
            let word = vget_lane_u32::<0>(vreinterpret_u32_u8(y));
            (out as *mut u32).write_unaligned(word);
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
pub(crate) trait Sink: Copy {
    /// What the sink needs of four channels (their `128 * sum w` and, for a requantization,
    /// their bias and multipliers: what the sums start from, [`Sink::start`], and what `put`
    /// reads besides them), read once for all the rows of a tile column.
    type Channels: Copy;

    /// The [`Sink::Channels`] of channels `o..o + 4`, whose sums lack `back`.
    ///
    /// # Safety
    /// `o + 4` within the call's outputs.
    unsafe fn channels(&self, o: usize, back: int32x4_t) -> Self::Channels;

    /// What the sums of four channels start from, given their [`Sink::channels`]:
    /// [`Sink::put`] takes sums that include it (a tile starts its accumulators from it, or
    /// adds it at its end). `128 * sum w`, and the bias of a requantization.
    fn start(&self, ch: Self::Channels) -> int32x4_t;

    /// `128 *` the weight sums of channels `o..o + 4`, if the call has them
    /// ([`TileRequant::weight_sums`]).
    ///
    /// # Safety
    /// `o + 4` within the call's outputs.
    unsafe fn back(&self, o: usize) -> Option<int32x4_t>;

    /// [`Sink::back`] where the call's weights also hold no -128 (then no two products of
    /// theirs overflow an i16): what [`super::aarch64::bias_back`] finds, without the weights.
    ///
    /// # Safety
    /// As for [`Sink::back`].
    #[inline(always)]
    unsafe fn back_paired(&self, o: usize) -> Option<int32x4_t> {
        // SAFETY: the caller's preconditions.
        unsafe { self.back(o).filter(|_| !self.has_min()) }
    }

    /// Whether the call's weights may hold -128 (true unless the call says otherwise).
    fn has_min(&self) -> bool;

    /// The sums of row `p`, channels `o..o + 4 V` ([`Sink::start`] included), with their
    /// channels `ch`.
    ///
    /// # Safety
    /// `p` must be one of the call's rows and `o + 4 V` within its outputs; `ch` those of
    /// channels `o..o + 4 V`.
    unsafe fn put<const V: usize>(
        &self,
        p: usize,
        o: usize,
        sums: [int32x4_t; V],
        ch: [Self::Channels; V],
    );

    /// The sum of row `p`, channel `o` (the channels a vector leaves over), with `128 * sum w`
    /// but without the rest of [`Sink::start`] (the bias, and the bits a narrow
    /// requantization's start adds).
    ///
    /// # Safety
    /// As for [`Sink::put`], with one channel.
    unsafe fn put1(&self, p: usize, o: usize, sum: i32);
}

/// Added to accumulators, rows `out_c` apart.
#[derive(Clone, Copy)]
pub(crate) struct AccSink {
    pub(crate) acc: *mut i32,
    pub(crate) out_c: usize,
}

impl Sink for AccSink {
    type Channels = int32x4_t;

    #[inline(always)]
    unsafe fn channels(&self, _o: usize, back: int32x4_t) -> int32x4_t {
        back
    }

    #[inline(always)]
    fn start(&self, back: int32x4_t) -> int32x4_t {
        back
    }

    #[inline(always)]
    unsafe fn back(&self, _o: usize) -> Option<int32x4_t> {
        None
    }

    #[inline(always)]
    fn has_min(&self) -> bool {
        true
    }

    #[inline(always)]
    unsafe fn put<const V: usize>(
        &self,
        p: usize,
        o: usize,
        sums: [int32x4_t; V],
        _back: [int32x4_t; V],
    ) {
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

/// Requantized into bytes, rows `out_c` apart, with residual inputs laid out alike; `BYTES`
/// is [`NeonRequant::byte_path`], `RES` [`NeonRequant::with_residual`], `NARROW`
/// [`NeonRequant::narrow`]: decided once per call ([`with_requant_sink`]), so that no tile
/// tests them.
#[derive(Clone, Copy)]
pub(crate) struct RequantSink<'a, const BYTES: bool, const RES: bool, const NARROW: bool> {
    rq: NeonRequant<'a>,
    residual: *const u8,
    out: *mut u8,
    out_c: usize,
}

impl<'a, const BYTES: bool, const RES: bool, const NARROW: bool>
    RequantSink<'a, BYTES, RES, NARROW>
{
    /// Requantized by `rq` into `out`, rows `out_c` apart, with the residual inputs (if any)
    /// laid out alike. The kernel that makes it has checked the buffers' lengths; `BYTES`,
    /// `RES` and `NARROW` must be `rq`'s.
    #[inline(always)]
    pub(crate) fn new(
        rq: NeonRequant<'a>,
        residual: Option<&[u8]>,
        out: &mut [u8],
        out_c: usize,
    ) -> Self {
        // (Once per call: with `RES` and no residual inputs, `put` would read through null.)
        let of_rq = (rq.byte_path(), rq.with_residual(), rq.narrow());
        assert_eq!((BYTES, RES, NARROW), of_rq);
        RequantSink {
            rq,
            residual: residual.map_or(std::ptr::null(), <[u8]>::as_ptr),
            out: out.as_mut_ptr(),
            out_c,
        }
    }
}

/// Runs `$body` with `$sink` bound to a [`RequantSink`] of `($rq, $residual, $out, $out_c)`
/// whose `BYTES`, `RES` and `NARROW` are the call's: six copies of `$body` (`NARROW` only
/// with `BYTES`), each without the tests.
macro_rules! with_requant_sink {
    (($rq:expr, $residual:expr, $out:expr, $out_c:expr), |$sink:ident| $body:expr) => {{
        let (residual, out, out_c): (Option<&[u8]>, &mut [u8], usize) = ($residual, $out, $out_c);
        let rq = $crate::neon_sink::NeonRequant::new($rq, residual.is_some());
        let at = (rq, residual, out, out_c);
        match (rq.byte_path(), rq.with_residual(), rq.narrow()) {
            (true, false, true) => with_requant_sink!(@as true, false, true, at, |$sink| $body),
            (true, true, true) => with_requant_sink!(@as true, true, true, at, |$sink| $body),
            (true, false, false) => with_requant_sink!(@as true, false, false, at, |$sink| $body),
            (true, true, false) => with_requant_sink!(@as true, true, false, at, |$sink| $body),
            (false, false, _) => with_requant_sink!(@as false, false, false, at, |$sink| $body),
            (false, true, _) => with_requant_sink!(@as false, true, false, at, |$sink| $body),
        }
    }};
    // One arm: the sink of those `BYTES`, `RES` and `NARROW`.
    (@as $bytes:literal, $res:literal, $narrow:literal, $at:ident, |$sink:ident| $body:expr) => {{
        let (rq, residual, out, out_c) = $at;
        let $sink = &$crate::neon_sink::RequantSink::<$bytes, $res, $narrow>::new(
            rq, residual, out, out_c,
        );
        $body
    }};
}
pub(crate) use with_requant_sink;

impl<const BYTES: bool, const RES: bool, const NARROW: bool> Sink
    for RequantSink<'_, BYTES, RES, NARROW>
{
    /// The bias with `128 * sum w` added (and with `NARROW` the bits of `1.5 * 2^23`: see
    /// [`NeonRequant::bytes`]), and the multipliers.
    type Channels = (int32x4_t, float32x4_t);

    #[inline(always)]
    unsafe fn channels(&self, o: usize, back: int32x4_t) -> (int32x4_t, float32x4_t) {
        let rq = self.rq.rq;
        // SAFETY: the caller guarantees channels `o..o + 4`; NEON is baseline.
        unsafe {
            let bias = vaddq_s32(vld1q_s32(rq.bias.as_ptr().add(o)), back);
            let bias = match NARROW {
                true => vaddq_s32(bias, vdupq_n_s32(MAGIC.to_bits() as i32)),
                false => bias,
            };
            (bias, vld1q_f32(rq.multiplier.as_ptr().add(o)))
        }
    }

    #[inline(always)]
    fn start(&self, (bias_back, _): (int32x4_t, float32x4_t)) -> int32x4_t {
        bias_back
    }

    #[inline(always)]
    unsafe fn back(&self, o: usize) -> Option<int32x4_t> {
        // SAFETY: the caller guarantees channels `o..o + 4`, which `fits_requant` /
        // `fits_direct_requant` found in the weight sums; NEON is baseline.
        let sums = |ws: &[i32]| unsafe { vshlq_n_s32::<7>(vld1q_s32(ws.as_ptr().add(o))) };
        self.rq.rq.weight_sums.map(|ws| sums(ws.sums))
    }

    #[inline(always)]
    fn has_min(&self) -> bool {
        self.rq.rq.weight_sums.is_none_or(|ws| ws.has_min)
    }

    #[inline(always)]
    unsafe fn put<const V: usize>(
        &self,
        p: usize,
        o: usize,
        sums: [int32x4_t; V],
        ch: [(int32x4_t, float32x4_t); V],
    ) {
        let at = p * self.out_c + o;
        let res = |v: usize| self.residual.wrapping_add(at + 4 * v);
        // SAFETY: the caller guarantees the outputs (and residual inputs, which are only read
        // when there are some) are in bounds.
        unsafe {
            // The residual inputs as f32, read only with `RES`: on the byte path 16 bytes at a
            // time by table where the vectors come in fours and the CPU looks up fast, else 8
            // at a time where they come in pairs; otherwise 4 at a time.
            let r: [float32x4_t; V] = std::array::from_fn(|v| match RES {
                false => vdupq_n_f32(0.0),
                true if TABLE_RESIDUAL && BYTES && V.is_multiple_of(4) => {
                    self.rq.residual_table(vld1q_u8(res(v / 4 * 4)), v % 4)
                }
                true if BYTES && V.is_multiple_of(2) => {
                    self.rq.residual_widened(vld1_u8(res(v / 2 * 2)))[v % 2]
                }
                true => self.rq.residual_lanes(res(v)),
            });
            if BYTES {
                let q: [int32x4_t; V] =
                    std::array::from_fn(|v| self.rq.bytes::<RES, NARROW>((sums[v], ch[v].1), r[v]));
                if V.is_multiple_of(4) {
                    for v in (0..V).step_by(4) {
                        let q = [q[v], q[v + 1], q[v + 2], q[v + 3]];
                        self.rq.store16_bytes(self.out.add(at + 4 * v), q);
                    }
                } else if V.is_multiple_of(2) {
                    for v in (0..V).step_by(2) {
                        self.rq
                            .store8_bytes(self.out.add(at + 4 * v), q[v], q[v + 1]);
                    }
                } else {
                    for (v, l) in q.into_iter().enumerate() {
                        self.rq.store4_bytes(self.out.add(at + 4 * v), l);
                    }
                }
                return;
            }
            let lanes: [int32x4_t; V] =
                std::array::from_fn(|v| self.rq.lanes::<RES>((sums[v], ch[v].1), r[v]));
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
            // (Without `RES`, the definition adds no residual term, given the input or not.)
            let res = RES.then(|| *self.residual.add(at));
            *self.out.add(at) = self.rq.output(o, sum, res);
        }
    }
}

impl<S: Sink> SinkExt for S {}

/// A tile's rows, put with their channels.
pub(crate) trait SinkExt: Sink {
    /// The first `rows` rows of a tile's sums (the others are a clamped tile's repeats of its
    /// last row), channels `o..o + 4 V` with their channels `ch` (from [`Sink::channels`]).
    ///
    /// # Safety
    /// As for [`Sink::put`], for rows `p0..p0 + rows`.
    #[inline(always)]
    unsafe fn put_rows<const R: usize, const V: usize>(
        &self,
        (p0, rows): (usize, usize),
        o: usize,
        sums: [[int32x4_t; V]; R],
        ch: [Self::Channels; V],
    ) {
        // SAFETY: the caller's preconditions.
        unsafe {
            if rows == R {
                // A whole tile unrolled by hand, one block of straight code whose rows overlap
                // (a `for` over the rows, LLVM may roll into a loop through memory).
                const { assert!(R <= 4) };
                self.put(p0, o, sums[0], ch);
                if R > 1 {
                    self.put(p0 + 1, o, sums[1 % R], ch);
                }
                if R > 2 {
                    self.put(p0 + 2, o, sums[2 % R], ch);
                }
                if R > 3 {
                    self.put(p0 + 3, o, sums[3 % R], ch);
                }
            } else {
                for (r, s) in sums.into_iter().enumerate().take(rows) {
                    self.put(p0 + r, o, s, ch);
                }
            }
        }
    }
}

/// What a tile's row loop does with the sums of each `R` rows, `V` vectors each, at the tile's
/// end (a trait rather than a closure, so that it is inlined into the loop for certain: a
/// closure was not, and its call cost the A72 a tenth of an inference).
pub(crate) trait TileEnd<const R: usize, const V: usize> {
    /// What each vector's sums start from ([`Sink::start`]), in memory (see
    /// [`fresh_copies`]).
    fn start(&self) -> &[int32x4_t; V];

    /// Takes the sums of rows `r0..r0 + R` (those past the call's last row are repeats of
    /// it), [`TileEnd::start`] included.
    ///
    /// # Safety
    /// As the implementation states.
    unsafe fn end(&self, r0: usize, sums: [[int32x4_t; V]; R]);
}

/// The sums put into a sink, from the tile's registers: of `rows` rows (the sink's from
/// `first`), the first `vectors` (`1..=4`, or `V`) vectors of outputs from `o`, with their
/// channels `ch`.
pub(crate) struct ToSink<S: Sink, const V: usize> {
    /// A copy, so that its fields may stay in registers (through a reference, they were
    /// read again after every store).
    pub(crate) sink: S,
    pub(crate) first: usize,
    pub(crate) rows: usize,
    pub(crate) o: usize,
    pub(crate) vectors: usize,
    pub(crate) ch: [S::Channels; V],
    /// [`Sink::start`] of each of `ch`.
    pub(crate) start: [int32x4_t; V],
}

impl<S: Sink, const V: usize> ToSink<S, V> {
    /// The sums of `rows` rows, `vectors` vectors from output `o`, put into `sink` with their
    /// channels `ch`; the tile's row 0 is the sink's row `first`.
    #[inline(always)]
    pub(crate) fn new(
        (sink, first): (S, usize),
        (rows, o, vectors): (usize, usize, usize),
        ch: [S::Channels; V],
    ) -> Self {
        ToSink {
            sink,
            first,
            rows,
            o,
            vectors,
            ch,
            start: ch.map(|ch| sink.start(ch)),
        }
    }
}

/// `R` copies of the `V` vectors at `start`: every other row loaded anew (volatile loads,
/// which LLVM may neither hoist out of a loop nor merge), the rows between copied from the
/// row before. A tile's accumulators start from them: a loaded row takes no vector operation
/// (values held in registers would be copied, one operation per accumulator, and take
/// registers the tile needs), a copied row no load, and the A76 does two of each per cycle.
#[inline(always)]
pub(crate) fn fresh_copies<const R: usize, const V: usize>(
    start: &[int32x4_t; V],
) -> [[int32x4_t; V]; R] {
    // SAFETY: `start` is a reference, so each vector is valid, aligned and initialized.
    let load = || std::array::from_fn(|v| unsafe { std::ptr::read_volatile(&start[v]) });
    let mut last: [int32x4_t; V] = load();
    // (`from_fn` makes the rows in order.)
    std::array::from_fn(|r| {
        if r > 0 && r % 2 == 0 {
            last = load();
        }
        last
    })
}

impl<S: Sink, const R: usize, const V: usize> TileEnd<R, V> for ToSink<S, V> {
    #[inline(always)]
    fn start(&self) -> &[int32x4_t; V] {
        &self.start
    }

    /// # Safety
    /// As for [`Sink::put`], for the sink's rows `first + r0..first + r0 + R` (those below
    /// `first + rows`) and those outputs.
    #[inline(always)]
    unsafe fn end(&self, r0: usize, sums: [[int32x4_t; V]; R]) {
        let rows = (self.first + r0, (self.rows - r0).min(R));
        debug_assert!(self.vectors <= 4.min(V) || self.vectors == V);
        // The first `$n` vectors of each row (`$n <= V`).
        macro_rules! put {
            ($n:literal) => {{
                let s = |r: usize| -> [int32x4_t; $n] { std::array::from_fn(|v| sums[r][v]) };
                let ch: [S::Channels; $n] = std::array::from_fn(|v| self.ch[v]);
                let sums: [[int32x4_t; $n]; R] = std::array::from_fn(s);
                self.sink.put_rows(rows, self.o, sums, ch)
            }};
        }
        // SAFETY: the caller's preconditions; each arm takes at most `V` vectors.
        unsafe {
            match self.vectors {
                8 if V >= 8 => put!(8),
                4 if V >= 4 => put!(4),
                3 if V >= 3 => put!(3),
                2 if V >= 2 => put!(2),
                _ => put!(1),
            }
        }
    }
}

//! aarch64 twins of the generic kernels (NEON is part of the base ISA).
//!
//! `dot_i16_neon` (Cortex-A72/A57 class, no dot product): tiles of 4 rows x 8 outputs (and 4 x 4
//! for the grouped convolutions with 4 channels per group), the row count a constant of each
//! tile function so that the accumulators live in registers. Per input
//! pair, two weight loads (outputs o..o+4 and o+4..o+8, as `[w0 w1]` i16 pairs), one `dup` of the
//! row's pair per row, and `smlal` / `smlal2` into 16 i32x4 accumulators that hold the two
//! halves of each pair apart; one `addp` per accumulator pair at the end folds them into the
//! outputs. 4 multiply-accumulates per `smlal` (4 i32 lanes), no widening in the loop.

//!
//! `dot_u8i8_neon` (the u8-quad family, same Cortex-A72 class): 8-bit multiplies, twice the
//! work per instruction. `smull` takes i8, so the row's u8 values become `x - 128` (one `eor`
//! with 0x80), and `128 * sum_k w[k][o]` is added back to the outputs (computed once per call
//! and block of outputs): the integer result is exactly `sum x * w`. A product of two i8 fits in
//! i16, and so do two when the weights avoid -128 (|2 * -128 * 127| = 32512): quads are taken
//! two at a time, `smull` of the first + `smlal` of the second into i16, then one `sadalp` adds
//! pairs of those into i32 lanes. 16 multiply-accumulates per 3 instructions; the A72's multiply
//! pipe (`smull`, `smlal`) and its other pipe (`sadalp`, the row's `dup` and `eor`) are equally
//! busy. A block of outputs whose weights hold -128 (never written by the quantizer, which uses
//! [-127, 127], but allowed by ONNX) takes one quad at a time: `smull` then `sadalp`.

use super::neon_sink::{AccSink, RequantSink, Sink, SinkExt};
use super::requant::Requantize;
use std::arch::aarch64::*;

/// NEON twin of [`super::generic::dot_i16`].
pub fn dot_i16_neon(rows: usize, patch: &[i16], kp: usize, w: &[i16], n: usize, acc: &mut [i32]) {
    assert!(kp.is_multiple_of(2));
    assert!(super::fits(rows, kp, n, patch.len(), w.len(), acc.len()));
    for (o0, width) in super::panels(n) {
        // SAFETY: NEON is always present on aarch64; the slices hold rows * kp patch values,
        // kp * n weights and rows * n accumulators (asserted above): the panel's kp * width
        // weights from o0 * kp and its outputs o0..o0 + width of each row, all `dot_neon`
        // touches.
        unsafe {
            let w = w.as_ptr().add(o0 * kp);
            dot_neon(
                rows,
                patch.as_ptr(),
                kp,
                w,
                width,
                (acc.as_mut_ptr().add(o0), n),
            )
        }
    }
}

/// The pair of row `r` at pair `j`, repeated over 8 lanes.
///
/// # Safety
/// `r * kp + 2 * j + 1` must be inside `patch`.
#[inline(always)]
unsafe fn pair(patch: *const i16, kp: usize, r: usize, j: usize) -> int16x8_t {
    // SAFETY: the caller guarantees the two i16 at r * kp + 2j are inside `patch`.
    unsafe {
        let v = (patch.add(r * kp + 2 * j) as *const i32).read_unaligned();
        vreinterpretq_s16_s32(vdupq_n_s32(v))
    }
}

/// `R` rows (1..=4) x 8 outputs from `o`. `R` is a constant so that the loop over rows unrolls
/// and the `4 R` accumulators stay in registers (16 of the 32 vector registers at `R = 4`).
///
/// # Safety
/// Rows `r0..r0 + R` and outputs `o..o + 8` must be inside the buffers of [`dot_neon`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_8<const R: usize>(
    patch: *const i16,
    kp: usize,
    w: *const i16,
    n: usize,
    (acc, ldc): (*mut i32, usize),
    o: usize,
    pairs: usize,
    r0: usize,
) {
    // SAFETY: the caller guarantees the rows and outputs are in bounds; NEON is baseline.
    unsafe {
        // [row][half of the outputs][low/high lanes]
        let mut a = [[[vdupq_n_s32(0); 2]; 2]; R];
        for j in 0..pairs {
            let w0 = vld1q_s16(w.add((j * n + o) * 2));
            let w1 = vld1q_s16(w.add((j * n + o + 4) * 2));
            for (r, ar) in a.iter_mut().enumerate() {
                let x = pair(patch, kp, r0 + r, j);
                ar[0][0] = vmlal_s16(ar[0][0], vget_low_s16(x), vget_low_s16(w0));
                ar[0][1] = vmlal_high_s16(ar[0][1], x, w0);
                ar[1][0] = vmlal_s16(ar[1][0], vget_low_s16(x), vget_low_s16(w1));
                ar[1][1] = vmlal_high_s16(ar[1][1], x, w1);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (h, half) in ar.iter().enumerate() {
                let p = acc.add((r0 + r) * ldc + o + 4 * h);
                vst1q_s32(p, vaddq_s32(vld1q_s32(p), vpaddq_s32(half[0], half[1])));
            }
        }
    }
}

/// `R` rows (1..=4) x 4 outputs from `o`: `2 R` independent accumulators.
///
/// # Safety
/// Rows `r0..r0 + R` and outputs `o..o + 4` must be inside the buffers of [`dot_neon`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_4<const R: usize>(
    patch: *const i16,
    kp: usize,
    w: *const i16,
    n: usize,
    (acc, ldc): (*mut i32, usize),
    o: usize,
    pairs: usize,
    r0: usize,
) {
    // SAFETY: the caller guarantees the rows and outputs are in bounds; NEON is baseline.
    unsafe {
        let mut a = [[vdupq_n_s32(0); 2]; R];
        for j in 0..pairs {
            let wv = vld1q_s16(w.add((j * n + o) * 2));
            for (r, ar) in a.iter_mut().enumerate() {
                let x = pair(patch, kp, r0 + r, j);
                ar[0] = vmlal_s16(ar[0], vget_low_s16(x), vget_low_s16(wv));
                ar[1] = vmlal_high_s16(ar[1], x, wv);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            let p = acc.add((r0 + r) * ldc + o);
            vst1q_s32(p, vaddq_s32(vld1q_s32(p), vpaddq_s32(ar[0], ar[1])));
        }
    }
}

/// Runs a tile function over all rows: `$tile::<4>` in steps of 4 rows, then the 3-, 2- or 1-row
/// tail, the row offset passed last. Generic arguments after the row count go in brackets.
macro_rules! over_rows {
    ($tile:ident [$($g:tt)*], $rows:expr, $($arg:expr),*) => {{
        let mut r0 = 0;
        while r0 + 4 <= $rows {
            $tile::<4 $($g)*>($($arg,)* r0);
            r0 += 4;
        }
        match $rows - r0 {
            3 => $tile::<3 $($g)*>($($arg,)* r0),
            2 => $tile::<2 $($g)*>($($arg,)* r0),
            1 => $tile::<1 $($g)*>($($arg,)* r0),
            _ => {}
        }
    }};
}

/// One panel of `n` outputs, whose accumulators are `ldc` apart from row to row.
///
/// # Safety
/// `patch` must hold `rows * kp` values, `w` `kp * n`, `acc` rows of `n` accumulators `ldc`
/// apart.
unsafe fn dot_neon(
    rows: usize,
    patch: *const i16,
    kp: usize,
    w: *const i16,
    n: usize,
    (acc, ldc): (*mut i32, usize),
) {
    let pairs = kp / 2;
    // SAFETY (every intrinsic and pointer below): NEON is baseline; each access stays inside
    // the bounds stated above, as the loop conditions ensure.
    unsafe {
        let mut o = 0;
        while o + 8 <= n {
            over_rows!(tile_8[], rows, patch, kp, w, n, (acc, ldc), o, pairs);
            o += 8;
        }
        // 4 outputs: the grouped convolutions with 4 channels per group (ResNeXt 32x4d).
        while o + 4 <= n {
            over_rows!(tile_4[], rows, patch, kp, w, n, (acc, ldc), o, pairs);
            o += 4;
        }
        while o < n {
            for r in 0..rows {
                let mut s = 0i32;
                for j in 0..pairs {
                    let x0 = *patch.add(r * kp + 2 * j) as i32;
                    let x1 = *patch.add(r * kp + 2 * j + 1) as i32;
                    s += x0 * *w.add((j * n + o) * 2) as i32
                        + x1 * *w.add((j * n + o) * 2 + 1) as i32;
                }
                *acc.add(r * ldc + o) += s;
            }
            o += 1;
        }
    }
}

/// NEON twin of [`super::generic::dot_u8i8`].
pub fn dot_u8i8_neon(rows: usize, patch: &[u8], kq: usize, w: &[i8], n: usize, acc: &mut [i32]) {
    assert!(kq.is_multiple_of(4));
    assert!(super::fits(rows, kq, n, patch.len(), w.len(), acc.len()));
    for (o0, width) in super::panels(n) {
        // SAFETY: NEON is always present on aarch64; the slices hold rows * kq patch values,
        // kq * n weights and rows * n accumulators (asserted above): the panel's kq * width
        // weights from o0 * kq and its outputs o0..o0 + width of each row, all `dot_u8_neon`
        // touches.
        unsafe {
            let w = w.as_ptr().add(o0 * kq);
            let sink = AccSink {
                acc: acc.as_mut_ptr(),
                out_c: n,
            };
            dot_u8_neon(rows, patch.as_ptr(), kq, w, width, (&sink, o0))
        }
    }
}

/// NEON twin of [`super::generic::dot_u8i8_requant`].
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_neon(
    rows: usize,
    patch: &[u8],
    kq: usize,
    w: &[i8],
    n: usize,
    rq: &Requantize,
    residual: Option<&[u8]>,
    out: &mut [u8],
    ldo: usize,
) {
    assert!(super::fits_requant(
        rows,
        (patch, kq),
        w,
        n,
        rq,
        residual,
        out,
        ldo
    ));
    let sink = RequantSink::new(rq, residual, out, ldo);
    for (o0, width) in super::panels(n) {
        // SAFETY: `fits_requant` holds: rows * kq patch values, kq * n weights (the panel's
        // from o0 * kq), n channels of requantization, and rows of n outputs (and residual
        // inputs, if any) ldo apart.
        unsafe {
            let w = w.as_ptr().add(o0 * kq);
            dot_u8_neon(rows, patch.as_ptr(), kq, w, width, (&sink, o0))
        }
    }
}

/// The quad `q` of row `r` as i8 `x - 128`, repeated over 16 lanes.
///
/// # Safety
/// `r * kq + 4 * q + 3` must be inside `patch`.
#[inline(always)]
unsafe fn quad(patch: *const u8, kq: usize, r: usize, q: usize) -> int8x16_t {
    // SAFETY: the caller guarantees the four bytes at r * kq + 4q are inside `patch`.
    unsafe {
        let v = (patch.add(r * kq + 4 * q) as *const u32).read_unaligned();
        vreinterpretq_s8_u8(veorq_u8(
            vreinterpretq_u8_u32(vdupq_n_u32(v)),
            vdupq_n_u8(0x80),
        ))
    }
}

/// `128 * sum_k w[k][o]` for outputs `o..o + 4` (what `x - 128` took away), and whether any of
/// those weights is -128.
///
/// # Safety
/// Outputs `o..o + 4` of every quad must be inside `w`.
#[inline(always)]
pub(super) unsafe fn bias_back(
    w: *const i8,
    n: usize,
    o: usize,
    quads: usize,
) -> (int32x4_t, bool) {
    // SAFETY: the caller guarantees the weights are in bounds; NEON is baseline.
    unsafe {
        let mut s = vdupq_n_s32(0);
        let mut low = vdupq_n_s8(0);
        for q in 0..quads {
            let wv = vld1q_s8(w.add((q * n + o) * 4));
            // Pairs of i8 into i16, then pairs of those into i32: one lane per output.
            s = vpadalq_s16(s, vpaddlq_s8(wv));
            low = vminq_s8(low, wv);
        }
        (vshlq_n_s32::<7>(s), vminvq_s8(low) == i8::MIN)
    }
}

/// `x * w` of the low (`H = 0`) or high (`H = 1`) eight lanes, into i16.
#[inline(always)]
pub(super) fn mul<const H: usize>(x: int8x16_t, w: int8x16_t) -> int16x8_t {
    // SAFETY: NEON is baseline on aarch64; pure register operations.
    unsafe {
        if H == 0 {
            vmull_s8(vget_low_s8(x), vget_low_s8(w))
        } else {
            vmull_high_s8(x, w)
        }
    }
}

/// `p + x * w` of the low or high eight lanes, in i16 (no overflow when `w` avoids -128 and `p`
/// is one such product).
#[inline(always)]
pub(super) fn mla<const H: usize>(p: int16x8_t, x: int8x16_t, w: int8x16_t) -> int16x8_t {
    // SAFETY: NEON is baseline on aarch64; pure register operations.
    unsafe {
        if H == 0 {
            vmlal_s8(p, vget_low_s8(x), vget_low_s8(w))
        } else {
            vmlal_high_s8(p, x, w)
        }
    }
}

/// The sums `sum x * w - 128 * sum w` of rows `r0..r0 + R` (1..=4) and outputs `o..o + 4 V`
/// (`V` = 1 or 2 vectors of 4 outputs): per row and vector two accumulators, each lane the sum
/// of products of one output, folded by `addp` at the end. `PAIRED`: two quads per `sadalp`
/// (weights without -128; an odd last quad alone, after the loop), else one.
///
/// # Safety
/// Rows `r0..r0 + R` and outputs `o..o + 4 V` must be inside the buffers of [`dot_u8_neon`].
#[inline(always)]
unsafe fn tile_u8<const R: usize, const V: usize, const PAIRED: bool>(
    patch: *const u8,
    kq: usize,
    w: *const i8,
    n: usize,
    o: usize,
    quads: usize,
    r0: usize,
) -> [[int32x4_t; V]; R] {
    // SAFETY: the caller guarantees the rows and outputs are in bounds; NEON is baseline.
    unsafe {
        let mut a = [[[vdupq_n_s32(0); 2]; V]; R];
        let wq = |q: usize| -> [int8x16_t; V] {
            std::array::from_fn(|v| vld1q_s8(w.add((q * n + o + 4 * v) * 4)))
        };
        let mut q = 0;
        if !PAIRED {
            while q < quads {
                let w0 = wq(q);
                for (r, ar) in a.iter_mut().enumerate() {
                    let x = quad(patch, kq, r0 + r, q);
                    for v in 0..V {
                        ar[v][0] = vpadalq_s16(ar[v][0], mul::<0>(x, w0[v]));
                        ar[v][1] = vpadalq_s16(ar[v][1], mul::<1>(x, w0[v]));
                    }
                }
                q += 1;
            }
        } else {
            while q + 2 <= quads {
                let (w0, w1) = (wq(q), wq(q + 1));
                for (r, ar) in a.iter_mut().enumerate() {
                    let x0 = quad(patch, kq, r0 + r, q);
                    let x1 = quad(patch, kq, r0 + r, q + 1);
                    for v in 0..V {
                        ar[v][0] = vpadalq_s16(ar[v][0], mla::<0>(mul::<0>(x0, w0[v]), x1, w1[v]));
                        ar[v][1] = vpadalq_s16(ar[v][1], mla::<1>(mul::<1>(x0, w0[v]), x1, w1[v]));
                    }
                }
                q += 2;
            }
        }
        let mut sums = a.map(|ar| ar.map(|av| vpaddq_s32(av[0], av[1])));
        if PAIRED && q < quads {
            // An odd last quad, after the loop (inside it, LLVM moved the accumulators).
            let last = tile_u8::<R, V, false>(patch.add(4 * q), kq, w.add(q * n * 4), n, o, 1, r0);
            for (sr, lr) in sums.iter_mut().zip(last) {
                for (sv, lv) in sr.iter_mut().zip(lr) {
                    *sv = vaddq_s32(*sv, lv);
                }
            }
        }
        sums
    }
}

/// Every row of outputs `o..o + 4 V` into `sink`, in tiles of 4 rows.
///
/// # Safety
/// As for [`dot_u8_neon`], with outputs `o..o + 4 V` inside the panel.
#[inline(always)]
unsafe fn rows_u8<const V: usize, const PAIRED: bool>(
    (rows, patch, kq): (usize, *const u8, usize),
    (w, n, o, quads): (*const i8, usize, usize, usize),
    back: [int32x4_t; V],
    (sink, o_sink): (&impl Sink, usize),
) {
    // SAFETY: the caller's preconditions; tiles stay inside `rows`.
    unsafe {
        let mut r0 = 0;
        while r0 + 4 <= rows {
            let sums = tile_u8::<4, V, PAIRED>(patch, kq, w, n, o, quads, r0);
            sink.put_all(r0, o_sink, sums, back);
            r0 += 4;
        }
        match rows - r0 {
            3 => sink.put_all(
                r0,
                o_sink,
                tile_u8::<3, V, PAIRED>(patch, kq, w, n, o, quads, r0),
                back,
            ),
            2 => sink.put_all(
                r0,
                o_sink,
                tile_u8::<2, V, PAIRED>(patch, kq, w, n, o, quads, r0),
                back,
            ),
            1 => sink.put_all(
                r0,
                o_sink,
                tile_u8::<1, V, PAIRED>(patch, kq, w, n, o, quads, r0),
                back,
            ),
            _ => {}
        }
    }
}

/// One panel of `n` outputs, the first of them output `o0` of the sink's rows.
///
/// # Safety
/// `patch` must hold `rows * kq` values, `w` `kq * n`, and the sink rows of outputs
/// `o0..o0 + n`.
unsafe fn dot_u8_neon(
    rows: usize,
    patch: *const u8,
    kq: usize,
    w: *const i8,
    n: usize,
    (sink, o0): (&impl Sink, usize),
) {
    let quads = kq / 4;
    let a = (rows, patch, kq);
    // SAFETY (every intrinsic and pointer below): NEON is baseline; each access stays inside
    // the bounds stated above, as the loop conditions ensure.
    unsafe {
        let mut o = 0;
        while o + 8 <= n {
            let ((b0, m0), (b1, m1)) = (bias_back(w, n, o, quads), bias_back(w, n, o + 4, quads));
            let ws = (w, n, o, quads);
            if m0 || m1 {
                rows_u8::<2, false>(a, ws, [b0, b1], (sink, o0 + o));
            } else {
                rows_u8::<2, true>(a, ws, [b0, b1], (sink, o0 + o));
            }
            o += 8;
        }
        // 4 outputs: the grouped convolutions with 4 channels per group (ResNeXt 32x4d).
        while o + 4 <= n {
            let (b, m) = bias_back(w, n, o, quads);
            let ws = (w, n, o, quads);
            if m {
                rows_u8::<1, false>(a, ws, [b], (sink, o0 + o));
            } else {
                rows_u8::<1, true>(a, ws, [b], (sink, o0 + o));
            }
            o += 4;
        }
        while o < n {
            for r in 0..rows {
                let mut s = 0i32;
                for k in 0..kq {
                    s += *patch.add(r * kq + k) as i32
                        * *w.add(((k / 4) * n + o) * 4 + k % 4) as i32;
                }
                sink.put1(r, o0 + o, s);
            }
            o += 1;
        }
    }
}

//! aarch64 twins of the generic kernels (NEON is part of the base ISA).
//!
//! `dot_i16_neon` (Cortex-A72/A57 class, no dot product): tiles of 4 rows x 8 outputs (and 4 x 4
//! for the grouped convolutions with 4 channels per group), the row count a constant of each
//! tile function so that the accumulators live in registers. Per input
//! pair, two weight loads (outputs o..o+4 and o+4..o+8, as `[w0 w1]` i16 pairs), one `dup` of the
//! row's pair per row, and `smlal` / `smlal2` into 16 i32x4 accumulators that hold the two
//! halves of each pair apart; one `addp` per accumulator pair at the end folds them into the
//! outputs. 4 multiply-accumulates per `smlal` (4 i32 lanes), no widening in the loop.

use std::arch::aarch64::*;

/// NEON twin of [`super::generic::dot_i16`].
pub fn dot_i16_neon(rows: usize, patch: &[i16], kp: usize, w: &[i16], n: usize, acc: &mut [i32]) {
    assert!(kp.is_multiple_of(2));
    assert!(patch.len() >= rows * kp && w.len() >= kp * n && acc.len() >= rows * n);
    // SAFETY: NEON is always present on aarch64; the slices hold rows * kp patch values,
    // kp * n weights and rows * n accumulators (asserted above), all `dot_neon` touches.
    unsafe { dot_neon(rows, patch.as_ptr(), kp, w.as_ptr(), n, acc.as_mut_ptr()) }
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
    acc: *mut i32,
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
                let p = acc.add((r0 + r) * n + o + 4 * h);
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
    acc: *mut i32,
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
            let p = acc.add((r0 + r) * n + o);
            vst1q_s32(p, vaddq_s32(vld1q_s32(p), vpaddq_s32(ar[0], ar[1])));
        }
    }
}

/// Runs a tile function over all rows: `$tile::<4>` in steps of 4 rows, then the 3-, 2- or 1-row
/// tail, the row offset passed last.
macro_rules! over_rows {
    ($tile:ident, $rows:expr, $($arg:expr),*) => {{
        let mut r0 = 0;
        while r0 + 4 <= $rows {
            $tile::<4>($($arg,)* r0);
            r0 += 4;
        }
        match $rows - r0 {
            3 => $tile::<3>($($arg,)* r0),
            2 => $tile::<2>($($arg,)* r0),
            1 => $tile::<1>($($arg,)* r0),
            _ => {}
        }
    }};
}

/// # Safety
/// `patch` must hold `rows * kp` values, `w` `kp * n`, `acc` `rows * n`.
unsafe fn dot_neon(
    rows: usize,
    patch: *const i16,
    kp: usize,
    w: *const i16,
    n: usize,
    acc: *mut i32,
) {
    let pairs = kp / 2;
    // SAFETY (every intrinsic and pointer below): NEON is baseline; each access stays inside
    // the bounds stated above, as the loop conditions ensure.
    unsafe {
        let mut o = 0;
        while o + 8 <= n {
            over_rows!(tile_8, rows, patch, kp, w, n, acc, o, pairs);
            o += 8;
        }
        // 4 outputs: the grouped convolutions with 4 channels per group (ResNeXt 32x4d).
        while o + 4 <= n {
            over_rows!(tile_4, rows, patch, kp, w, n, acc, o, pairs);
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
                *acc.add(r * n + o) += s;
            }
            o += 1;
        }
    }
}

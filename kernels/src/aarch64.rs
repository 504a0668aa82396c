//! aarch64 twins of the generic u8-quad dot kernels (NEON is part of the base ISA), for the
//! Cortex-A72/A57 class (no dot product).
//!
//! `dot_u8i8_neon`: 8-bit multiplies (an i16-pair kernel set, `smlal` on i16, did half the work
//! per instruction and was dropped). `smull` takes i8, so the row's u8 values become `x - 128` (one `eor`
//! with 0x80), and `128 * sum_k w[k][o]` is added back to the outputs (from the packed layer's
//! weight sums, or computed once per call and block of outputs): the integer result is exactly
//! `sum x * w`. A product of two i8 fits in i16, and so do two when the weights avoid -128
//! (|2 * -128 * 127| = 32512): quads are taken two at a time, `smull` of the first + `smlal` of
//! the second into i16, then one `sadalp` adds pairs of those into i32 lanes. 16
//! multiply-accumulates per 3 instructions; the A72's multiply pipe (`smull`, `smlal`) and its
//! other pipe (`sadalp`, the row's `dup` and `eor`) are equally busy. A block of outputs whose weights hold -128 in the same byte lane of two paired quads
//! (never written by our quantizer, which uses [-127, 127], rare from others: see
//! [`bias_back`]) takes one quad at a time: `smull` then `sadalp`.
//!
//! Every product goes through one tile of 4 rows x 8 outputs: a last 1-3 rows run it with the
//! last row repeated, a last 4 outputs with their vector repeated, and only the real ones reach
//! the sink; a panel's last 1-3 outputs run it too ([`partial_vector`]).

use super::neon_sink::{with_requant_sink, AccSink, Sink, TileEnd, ToSink};
use super::requant::TileRequant;
use std::arch::aarch64::*;
use std::arch::asm;

/// NEON twin of [`super::generic::dot_u8i8`].
pub fn dot_u8i8_neon(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
) {
    crate::signatures::check_dot_u8i8(rows, (patch, depth_bytes), w, n, acc);
    for (o0, width) in crate::signatures::panels(n) {
        // SAFETY: NEON is always present on aarch64; the slices hold rows * depth_bytes patch values,
        // depth_bytes * n weights and rows * n accumulators (asserted above): the panel's depth_bytes * width
        // weights from o0 * depth_bytes and its outputs o0..o0 + width of each row, all `dot_u8_neon`
        // touches.
        unsafe {
            let w = w.as_ptr().add(o0 * depth_bytes);
            let sink = AccSink {
                acc: acc.as_mut_ptr(),
                out_c: n,
            };
            dot_u8_neon(rows, patch.as_ptr(), depth_bytes, w, width, (&sink, o0))
        }
    }
}

/// NEON twin of [`super::generic::dot_u8i8_requant`].
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_neon(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    rq: &TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
    ldo: usize,
) {
    assert!(crate::signatures::fits_requant(
        rows,
        (patch, depth_bytes),
        w,
        n,
        rq,
        residual,
        out,
        ldo
    ));
    with_requant_sink!((rq, residual, out, ldo), |sink| {
        for (o0, width) in crate::signatures::panels(n) {
            // SAFETY: `fits_requant` holds: rows * depth_bytes patch values, depth_bytes * n
            // weights (the panel's from o0 * depth_bytes), n channels of requantization, and
            // rows of n outputs (and residual inputs, if any) ldo apart.
            unsafe {
                let w = w.as_ptr().add(o0 * depth_bytes);
                dot_u8_neon(rows, patch.as_ptr(), depth_bytes, w, width, (sink, o0))
            }
        }
    })
}

/// `128 * sum_k w[k][o]` for outputs `o..o + 4` (what `x - 128` took away), and whether two
/// quads the paired loop takes together (`2j`, `2j + 1`) hold -128 in the same byte lane: only
/// then may the two products of a lane overflow their i16 ([`super::weight_split`]). Weights
/// with a -128 here and there (onnxruntime's symmetric [-128, 127] range) keep the paired loop.
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
        let (mut clash, mut first) = (vdupq_n_s8(0), vdupq_n_s8(0));
        for q in 0..quads {
            let wv = vld1q_s8(w.add((q * n + o) * 4));
            // Pairs of i8 into i16, then pairs of those into i32: one lane per output.
            s = vpadalq_s16(s, vpaddlq_s8(wv));
            if q % 2 == 1 {
                clash = vminq_s8(clash, vmaxq_s8(first, wv));
            }
            first = wv;
        }
        (vshlq_n_s32::<7>(s), vminvq_s8(clash) == i8::MIN)
    }
}

/// `addp`: the sums of adjacent lanes of `a`, then of `b`. Written as assembly: as
/// `vpaddq_s32` followed by an add, LLVM made it two `uzp`s and two adds (each `uzp` three
/// micro-ops on the A72).
#[inline(always)]
fn addp(a: int32x4_t, b: int32x4_t) -> int32x4_t {
    let d;
    // SAFETY: one register-only NEON instruction (baseline on aarch64).
    unsafe {
        asm!(
            "addp {d:v}.4s, {a:v}.4s, {b:v}.4s",
            d = lateout(vreg) d,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    d
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

/// For a panel's last `n - o` (1-3) outputs, whose weight vector would reach past the panel:
/// their last quad's weights zero-padded to 16 bytes, and their `128 * sum w`.
///
/// # Safety
/// Outputs `o..n` of each of the `quads` quads of the panel of `n` at `w` must be readable.
pub(super) unsafe fn partial_weights(
    w: *const i8,
    n: usize,
    o: usize,
    quads: usize,
) -> ([i8; 16], [i32; 4]) {
    let lanes = n - o;
    let (mut last, mut back) = ([0i8; 16], [0i32; 4]);
    // SAFETY: the caller's preconditions.
    unsafe {
        for q in 0..quads {
            let at = w.add((q * n + o) * 4);
            for (l, b) in back.iter_mut().enumerate().take(lanes) {
                for t in 0..4 {
                    *b += *at.add(4 * l + t) as i32;
                }
            }
            if q + 1 == quads {
                std::ptr::copy_nonoverlapping(at, last.as_mut_ptr(), 4 * lanes);
            }
        }
    }
    (last, back.map(|b| 128 * b))
}

/// The first `lanes` outputs of a 4-output vector's sums (`+ back`), rows `p0..p0 + rows`,
/// one by one (a panel's last 1-3 outputs).
///
/// # Safety
/// As for [`Sink::put1`], for those rows and outputs.
#[inline(always)]
pub(super) unsafe fn put_lanes(
    sink: &impl Sink,
    (p0, rows): (usize, usize),
    (o, lanes): (usize, usize),
    sums: [int32x4_t; 4],
    back: [i32; 4],
) {
    // SAFETY: the caller's preconditions; NEON is baseline.
    unsafe {
        for (r, s) in sums.into_iter().enumerate().take(rows) {
            let mut lane = [0i32; 4];
            vst1q_s32(lane.as_mut_ptr(), s);
            for l in 0..lanes {
                sink.put1(p0 + r, o + l, lane[l] + back[l]);
            }
        }
    }
}

/// Rows `r0..r0 + R` of the patch, those past the last row replaced by it.
///
/// # Safety
/// `r0 < rows`, and the patch must hold `rows` rows of `depth_bytes`.
#[inline(always)]
pub(super) unsafe fn clamped_rows<const R: usize>(
    patch: *const u8,
    depth_bytes: usize,
    r0: usize,
    rows: usize,
) -> [*const u8; R] {
    // SAFETY: every row index is below `rows` (the caller's preconditions).
    std::array::from_fn(|r| unsafe { patch.add((r0 + r).min(rows - 1) * depth_bytes) })
}

/// The weights of a tile of 8 outputs: quad `q`'s vector `v` (4 outputs x 4 bytes) at
/// `w + q * wq + wv[v]`.
struct Tile {
    w: *const i8,
    wq: usize,
    wv: [usize; 2],
}

impl Tile {
    /// The weight vectors of quad `q`.
    ///
    /// # Safety
    /// The quad's vectors must be inside the weights.
    #[inline(always)]
    unsafe fn w(&self, q: usize) -> [int8x16_t; 2] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add(q * self.wq + self.wv[v])) })
    }

    /// The sums `sum x * w - 128 * sum w` of the 4 rows at `x` over `quads` quads: per row
    /// and vector two accumulators, each lane the sum of products of one output, folded by
    /// `addp` at the end. `PAIRED`: two quads per `sadalp` (weights without -128; the first two
    /// set the accumulators with `saddlp`; an odd last quad alone, after the loop), else one.
    ///
    /// Not inlined: one copy serves every call (inlined into the partial vector's, with its
    /// repeated vector known, LLVM made a narrower loop of it).
    ///
    /// # Safety
    /// Each row must hold `quads` quads and the weights `quads` quads of the tile's vectors.
    #[inline(never)]
    unsafe fn sums<const PAIRED: bool>(
        &self,
        x: [*const u8; 4],
        quads: usize,
    ) -> [[int32x4_t; 2]; 4] {
        // SAFETY: the caller's preconditions.
        unsafe { self.sums_inline::<PAIRED>(x, quads, None) }
    }

    /// Every 4 rows of the patch's `rows` (the last 1-3 with the last row repeated) through the
    /// loop of [`Tile::sums`], each tile's sums handed to `end` in registers: one call and one
    /// copy of the loop per caller's `end` (a sink that requantizes stores bytes without a
    /// round trip of the sums through memory, and with no call per tile).
    ///
    /// # Safety
    /// The patch must hold `rows` rows of `depth_bytes` (`4 * quads <= depth_bytes`), the
    /// weights `quads` quads of the tile's vectors, and `end` take every 4 rows from 0 to
    /// `rows`.
    #[inline(never)]
    unsafe fn rows_with<const PAIRED: bool>(
        &self,
        (patch, depth_bytes, rows): (*const u8, usize, usize),
        quads: usize,
        end: &impl TileEnd<4, 2>,
    ) {
        // SAFETY: the caller's preconditions; rows clamped to the last.
        unsafe {
            let start = *end.start();
            for r0 in (0..rows).step_by(4) {
                let x = clamped_rows(patch, depth_bytes, r0, rows);
                end.end(r0, self.sums_inline::<PAIRED>(x, quads, Some(start)));
            }
        }
    }

    /// [`Tile::sums`], plus `start` (each vector's, in every row) if given, added as the
    /// accumulators are folded; inlined into its caller.
    ///
    /// # Safety
    /// As for [`Tile::sums`].
    #[inline(always)]
    unsafe fn sums_inline<const PAIRED: bool>(
        &self,
        x: [*const u8; 4],
        quads: usize,
        start: Option<[int32x4_t; 2]>,
    ) -> [[int32x4_t; 2]; 4] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        unsafe {
            let mut a = [[[vdupq_n_s32(0); 2]; 2]; 4];
            let mut q = 0;
            if PAIRED {
                let flip = vdupq_n_u8(0x80);
                // The first two quads set the accumulators (no zeroed registers to add to).
                if quads >= 2 {
                    let (w0, w1) = (self.w(0), self.w(1));
                    for (ar, &xr) in a.iter_mut().zip(&x) {
                        paired_step::<false, true>(ar, (xr, 0, 4), (w0, w1), flip);
                    }
                    q = 2;
                }
                while q + 2 <= quads {
                    let (w0, w1) = (self.w(q), self.w(q + 1));
                    for (ar, &xr) in a.iter_mut().zip(&x) {
                        paired_step::<false, false>(ar, (xr, 4 * q, 4 * q + 4), (w0, w1), flip);
                    }
                    q += 2;
                }
                // An odd last quad, after the loop (inside it, LLVM moved the accumulators).
                if q < quads {
                    self.single(&mut a, x, q);
                }
            } else {
                for q in 0..quads {
                    self.single(&mut a, x, q);
                }
            }
            let fold = |ar: [[int32x4_t; 2]; 2]| {
                let s: [int32x4_t; 2] = std::array::from_fn(|v| addp(ar[v][0], ar[v][1]));
                match start {
                    Some(start) => [vaddq_s32(s[0], start[0]), vaddq_s32(s[1], start[1])],
                    None => s,
                }
            };
            [fold(a[0]), fold(a[1]), fold(a[2]), fold(a[3])]
        }
    }

    /// Adds quad `q` of the rows at `x` times its weights into `a`, one `sadalp` per product
    /// (any weights, -128 too). One block of assembly per row: as intrinsics, LLVM moved and
    /// spilled the 16 accumulators (the loop ran at a fifth of the A72's peak).
    ///
    /// # Safety
    /// The 4 bytes of quad `q` of each row and the quad's weights must be readable.
    #[inline(always)]
    unsafe fn single(&self, a: &mut [[[int32x4_t; 2]; 2]; 4], x: [*const u8; 4], q: usize) {
        // SAFETY: the caller's preconditions; the rest is register arithmetic.
        unsafe {
            let w = self.w(q);
            let flip = vdupq_n_u8(0x80);
            for (ar, xr) in a.iter_mut().zip(x) {
                asm!(
                    "ldr {t0:s}, [{x}]",
                    "eor {t0:v}.8b, {t0:v}.8b, {flip:v}.8b",
                    "dup {t2:v}.4s, {t0:v}.s[0]",
                    "smull {t0:v}.8h, {t2:v}.8b, {w0:v}.8b",
                    "smull2 {t1:v}.8h, {t2:v}.16b, {w0:v}.16b",
                    "sadalp {a00:v}.4s, {t0:v}.8h",
                    "sadalp {a01:v}.4s, {t1:v}.8h",
                    "smull {t0:v}.8h, {t2:v}.8b, {w1:v}.8b",
                    "smull2 {t1:v}.8h, {t2:v}.16b, {w1:v}.16b",
                    "sadalp {a10:v}.4s, {t0:v}.8h",
                    "sadalp {a11:v}.4s, {t1:v}.8h",
                    x = in(reg) xr.add(4 * q),
                    flip = in(vreg) flip,
                    w0 = in(vreg) w[0],
                    w1 = in(vreg) w[1],
                    a00 = inout(vreg) ar[0][0],
                    a01 = inout(vreg) ar[0][1],
                    a10 = inout(vreg) ar[1][0],
                    a11 = inout(vreg) ar[1][1],
                    t0 = out(vreg) _,
                    t1 = out(vreg) _,
                    t2 = out(vreg) _,
                    options(pure, readonly, nostack, preserves_flags)
                );
            }
        }
    }
}

/// One panel of `n` outputs, the first of them output `o0` of the sink's rows.
///
/// # Safety
/// `patch` must hold `rows * depth_bytes` values, `w` `depth_bytes * n`, and the sink rows of outputs
/// `o0..o0 + n`.
unsafe fn dot_u8_neon(
    rows: usize,
    patch: *const u8,
    depth_bytes: usize,
    w: *const i8,
    n: usize,
    (sink, o0): (&impl Sink, usize),
) {
    if rows == 0 {
        return;
    }
    let quads = depth_bytes / 4;
    let whole = n / 4 * 4;
    // SAFETY: every intrinsic and pointer below: NEON is baseline; rows are clamped to
    // `rows - 1`, vectors to the block's last whole one, so every access stays inside the
    // bounds stated above.
    unsafe {
        for o in (0..whole).step_by(8) {
            let vectors = ((whole - o) / 4).min(2);
            let last = o + 4 * (vectors - 1);
            let ((b0, m0), (b1, m1)) = match (sink.back_paired(o0 + o), sink.back_paired(o0 + last))
            {
                (Some(b0), Some(b1)) => ((b0, false), (b1, false)),
                _ => (bias_back(w, n, o, quads), bias_back(w, n, last, quads)),
            };
            let tile = Tile {
                w,
                wq: 4 * n,
                wv: [4 * o, 4 * last],
            };
            // The channels' constants once for all rows; each tile's sums go to the sink
            // straight from the tile's registers.
            let ch = [sink.channels(o0 + o, b0), sink.channels(o0 + last, b1)];
            let end = ToSink::new((*sink, 0), (rows, o0 + o, vectors), ch);
            if m0 || m1 {
                tile.rows_with::<false>((patch, depth_bytes, rows), quads, &end)
            } else {
                tile.rows_with::<true>((patch, depth_bytes, rows), quads, &end)
            }
        }
        if whole < n {
            partial_vector((rows, patch, depth_bytes), (w, n, whole), (sink, o0));
        }
    }
}

/// The last `n - o` (1..=3) outputs of a panel, on the tile: one vector of 4 outputs whose
/// lanes past `n` read the next quad's first outputs (garbage, never put), except in the last
/// quad, whose weights come zero-padded from the stack. One quad at a time (a garbage lane may
/// hold -128).
///
/// # Safety
/// As for [`dot_u8_neon`], with `n - 4 < o < n`.
unsafe fn partial_vector(
    (rows, patch, depth_bytes): (usize, *const u8, usize),
    (w, n, o): (*const i8, usize, usize),
    (sink, o0): (&impl Sink, usize),
) {
    let quads = depth_bytes / 4;
    let lanes = n - o;
    // SAFETY: NEON is baseline; quads before the last read 16 bytes from output `o` of their
    // row of `n`, which ends inside the next quad's row; the last quad's `lanes` outputs are
    // copied into a 16-byte buffer.
    unsafe {
        let (last, back) = partial_weights(w, n, o, quads);
        let tile = Tile {
            w: w.add(4 * o),
            wq: 4 * n,
            wv: [0; 2],
        };
        let last_tile = Tile {
            w: last.as_ptr(),
            wq: 0,
            wv: [0; 2],
        };
        for r0 in (0..rows).step_by(4) {
            let x = clamped_rows(patch, depth_bytes, r0, rows);
            let mut sums = tile.sums::<false>(x, quads.saturating_sub(1));
            if quads > 0 {
                let x = x.map(|row| row.add(4 * (quads - 1)));
                for (sr, lr) in sums.iter_mut().zip(last_tile.sums::<false>(x, 1)) {
                    sr[0] = vaddq_s32(sr[0], lr[0]);
                }
            }
            let rows = (r0, (rows - r0).min(4));
            put_lanes(sink, rows, (o0 + o, lanes), sums.map(|s| s[0]), back);
        }
    }
}

/// Two steps (quads) of one row or pixel into its accumulators `a[v][half]` of two vectors
/// of 4 outputs: the quads at `x + off0` and `x + off1` (and, `SPREAD`, the next 4 bytes of
/// each for the second vector)
/// as `x - 128` over 16 lanes, `smull` of the first step, `smlal` of the second into i16,
/// `sadalp` into the i32 accumulators. One block of assembly: as intrinsics, LLVM spent
/// `mov`s and stack spills on the 4 x 4 accumulators of a tile (the A72 loop of 4-channel
/// groups ran at 63 % of its peak, the dot kernel's tile with clamped rows at 73 %).
/// With `FIRST`, the two steps set the accumulators instead of adding to them (`saddlp`, not
/// `sadalp`: a tile's first steps need no zeroed registers).
///
/// # Safety
/// The 4 (`SPREAD`: 8) bytes at `x + off0` and `x + off1` must be readable; the weights must
/// avoid -128 (two products then fit an i16).
#[inline(always)]
pub(super) unsafe fn paired_step<const SPREAD: bool, const FIRST: bool>(
    a: &mut [[int32x4_t; 2]; 2],
    (x, off0, off1): (*const u8, usize, usize),
    (w0, w1): ([int8x16_t; 2], [int8x16_t; 2]),
    flip: uint8x16_t,
) {
    // The first vector's quads in registers t2 / t3 (step 0 / 1), the second's in `$a` / `$b`
    // (t4 / t5 when spread, else t2 / t3 again); t0 / t1 hold the loads, then the i16 products.
    macro_rules! step {
        ($acc:literal, $dir:ident, $width:literal, $dups:literal, $a:literal, $b:literal,
         $($spread:tt)*) => {
            asm!(
                concat!("ldr {t0:", $width, "}, [{x}, {o0}]"),
                concat!("ldr {t1:", $width, "}, [{x}, {o1}]"),
                "eor {t0:v}.8b, {t0:v}.8b, {flip:v}.8b",
                "eor {t1:v}.8b, {t1:v}.8b, {flip:v}.8b",
                $dups,
                "smull {t0:v}.8h, {t2:v}.8b, {w00:v}.8b",
                "smlal {t0:v}.8h, {t3:v}.8b, {w10:v}.8b",
                concat!($acc, " {a00:v}.4s, {t0:v}.8h"),
                "smull2 {t1:v}.8h, {t2:v}.16b, {w00:v}.16b",
                "smlal2 {t1:v}.8h, {t3:v}.16b, {w10:v}.16b",
                concat!($acc, " {a01:v}.4s, {t1:v}.8h"),
                concat!("smull {t0:v}.8h, {", $a, ":v}.8b, {w01:v}.8b"),
                concat!("smlal {t0:v}.8h, {", $b, ":v}.8b, {w11:v}.8b"),
                concat!($acc, " {a10:v}.4s, {t0:v}.8h"),
                concat!("smull2 {t1:v}.8h, {", $a, ":v}.16b, {w01:v}.16b"),
                concat!("smlal2 {t1:v}.8h, {", $b, ":v}.16b, {w11:v}.16b"),
                concat!($acc, " {a11:v}.4s, {t1:v}.8h"),
                x = in(reg) x,
                o0 = in(reg) off0,
                o1 = in(reg) off1,
                flip = in(vreg) flip,
                w00 = in(vreg) w0[0],
                w01 = in(vreg) w0[1],
                w10 = in(vreg) w1[0],
                w11 = in(vreg) w1[1],
                a00 = $dir(vreg) a[0][0],
                a01 = $dir(vreg) a[0][1],
                a10 = $dir(vreg) a[1][0],
                a11 = $dir(vreg) a[1][1],
                t0 = out(vreg) _,
                t1 = out(vreg) _,
                t2 = out(vreg) _,
                t3 = out(vreg) _,
                $($spread)*
                options(pure, readonly, nostack, preserves_flags)
            )
        };
    }
    // `FIRST`: `saddlp` sets the accumulators (their values before are not read).
    macro_rules! both {
        ($($args:tt)*) => {
            if FIRST {
                step!("saddlp", out, $($args)*)
            } else {
                step!("sadalp", inout, $($args)*)
            }
        };
    }
    // SAFETY: the caller guarantees the input bytes; the rest is register arithmetic.
    unsafe {
        if SPREAD {
            both!(
                "d",
                "dup {t2:v}.4s, {t0:v}.s[0]\n dup {t3:v}.4s, {t1:v}.s[0]\n \
                 dup {t4:v}.4s, {t0:v}.s[1]\n dup {t5:v}.4s, {t1:v}.s[1]",
                "t4",
                "t5",
                t4 = out(vreg) _,
                t5 = out(vreg) _,
            );
        } else {
            both!(
                "s",
                "dup {t2:v}.4s, {t0:v}.s[0]\n dup {t3:v}.4s, {t1:v}.s[0]",
                "t2",
                "t3",
            );
        }
    }
}

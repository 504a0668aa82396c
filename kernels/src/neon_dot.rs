//! aarch64 twins of the u8-quad dot kernels on the dot-product instructions (`sdot`, Armv8.2
//! `dotprod`: Cortex-A76/A78/A55, the Raspberry Pi 5, Jetson Orin), detected at run time.
//!
//! One `sdot` multiplies four i8 pairs per i32 lane and adds them: 16 multiply-accumulates per
//! instruction, four times the `smull` path of [`super::aarch64`]. The u8 inputs become
//! `x - 128` and `128 * sum w` is added back, as there. A tile is 2 rows x 32 outputs (a whole
//! panel) or 4 rows x 16: per 4 quads, one 16-byte load per row, 8 (4) weight vectors per quad
//! shared by the rows, and the indexed form `sdot v.4s, w.16b, x.4b[j]` takes quad `j` of the
//! row's register, so no quad is broadcast; 16 accumulators either way. A call of whole panels
//! flips its rows to `x - 128` once, ahead of the panels ([`flipped_panels`]); other calls flip
//! each row's 16 bytes in the loop (one `eor`, on the vector pipes the `sdot`s need).
//!
//! The `sdot` intrinsics are not stable Rust yet, so the instruction is written as inline
//! assembly (one instruction, registers chosen by the compiler), inside functions compiled
//! with the `dotprod` feature.

use super::aarch64::{bias_back, clamped_rows, partial_weights, put_lanes};
use super::neon_sink::{fresh_copies, with_requant_sink, AccSink, Sink, TileEnd, ToSink};
use super::requant::TileRequant;
use std::arch::aarch64::*;
use std::arch::asm;
use std::cell::Cell;

/// Whether this CPU has the dot-product instructions.
pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `sdot` twin of [`super::generic::dot_u8i8`].
pub fn dot_u8i8_sdot(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
) {
    crate::signatures::check_dot_u8i8(rows, (patch, depth_bytes), w, n, acc);
    if !available() {
        return super::generic::dot_u8i8(rows, patch, depth_bytes, w, n, acc);
    }
    let sink = AccSink {
        acc: acc.as_mut_ptr(),
        out_c: n,
    };
    for (o0, width) in crate::signatures::panels(n) {
        // SAFETY: the CPU has `dotprod` (checked above); the slices hold rows * depth_bytes patch
        // values, depth_bytes * n weights and rows * n accumulators (asserted above): the panel's
        // depth_bytes * width weights from o0 * depth_bytes and its outputs o0..o0 + width of each row.
        unsafe {
            let w = w.as_ptr().add(o0 * depth_bytes);
            panel(rows, patch.as_ptr(), depth_bytes, w, width, (&sink, o0))
        }
    }
}

/// `sdot` twin of [`super::generic::dot_u8i8_requant`].
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_sdot(
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
    if !available() {
        return super::generic::dot_u8i8_requant(
            rows,
            patch,
            depth_bytes,
            w,
            n,
            rq,
            residual,
            out,
            ldo,
        );
    }
    with_requant_sink!((rq, residual, out, ldo), |sink| {
        if flips(n, depth_bytes) {
            // SAFETY: as below; `flips` holds.
            return unsafe {
                flipped_panels((rows, patch.as_ptr(), depth_bytes), (w.as_ptr(), n), sink)
            };
        }
        for (o0, width) in crate::signatures::panels(n) {
            // SAFETY: the CPU has `dotprod`; `fits_requant` holds: rows * depth_bytes patch
            // values, depth_bytes * n weights (the panel's from o0 * depth_bytes), n channels of
            // requantization, and rows of n outputs (and residual inputs, if any) ldo apart.
            unsafe {
                let w = w.as_ptr().add(o0 * depth_bytes);
                panel(rows, patch.as_ptr(), depth_bytes, w, width, (sink, o0))
            }
        }
    })
}

/// The most bytes of rows [`flipped_panels`] flips at a time (an L1 cache's worth at most;
/// in tests, few enough that the tests' calls take several blocks).
const FLIP_BLOCK_BYTES: usize = if cfg!(test) { 1024 } else { 32 * 1024 };

thread_local! {
    /// Each thread's buffer of rows flipped to `x - 128` (its memory kept between calls).
    static FLIP_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Whether a call of `n` outputs and `depth_bytes` per row takes [`flipped_panels`]: whole
/// panels (the 2 x 32 tile, which has a loop for flipped rows), at least two to share each
/// row's flip, and a depth.
fn flips(n: usize, depth_bytes: usize) -> bool {
    n.is_multiple_of(32) && n >= 64 && depth_bytes > 0
}

/// Every panel of a call ([`flips`]) over its rows flipped to `x - 128` ahead, a block of
/// rows at a time into a thread's buffer: one `eor` per 16 bytes of a row, where each panel
/// would take its own (the tile's loop has 2 `eor`s per 64 `sdot`, on the same two vector
/// pipes: 3 % of the pointwise convolutions' time on the A76).
///
/// # Safety
/// The CPU must have `dotprod`; `patch` must hold `rows * depth_bytes` values, `w`
/// `depth_bytes * n`, and the sink rows of `n` outputs; `flips(n, depth_bytes)`.
#[target_feature(enable = "dotprod")]
unsafe fn flipped_panels(
    (rows, patch, depth_bytes): (usize, *const u8, usize),
    (w, n): (*const i8, usize),
    sink: &impl Sink,
) {
    debug_assert!(flips(n, depth_bytes));
    // An even number of rows per block (the tile's two), as many as fit.
    let per_block = (FLIP_BLOCK_BYTES / depth_bytes).max(2) / 2 * 2;
    let mut buf = FLIP_BUFFER.take();
    buf.resize(per_block.min(rows) * depth_bytes, 0);
    let flip = vdupq_n_u8(0x80);
    for r0 in (0..rows).step_by(per_block) {
        let rb = per_block.min(rows - r0);
        // SAFETY: rows `r0..r0 + rb` are inside `patch`, and `buf` holds `rb * depth_bytes`
        // bytes; the panels' preconditions are the caller's, over the flipped rows.
        unsafe {
            let (from, to) = (patch.add(r0 * depth_bytes), buf.as_mut_ptr());
            // (`to` read once: through `buf`, the pointer is read again after each store.)
            let (len, whole) = (rb * depth_bytes, rb * depth_bytes / 16 * 16);
            for i in (0..whole).step_by(16) {
                vst1q_u8(to.add(i), veorq_u8(vld1q_u8(from.add(i)), flip));
            }
            for i in whole..len {
                *to.add(i) = *from.add(i) ^ 0x80;
            }
            for o0 in (0..n).step_by(32) {
                let x = (rb, buf.as_ptr(), depth_bytes);
                let ws = (w.add(o0 * depth_bytes), 32, 0);
                block::<2, 8, true>(x, ws, (sink, o0, r0), 8);
            }
        }
    }
    FLIP_BUFFER.set(buf);
}

/// `a + sum_t w[4i + t] * x[4L + t]` per i32 lane `i`: `sdot` with quad `L` of `x`.
///
/// # Safety
/// The CPU must have `dotprod`, and the caller must be compiled with it.
#[inline(always)]
pub(super) unsafe fn sdot<const L: i32>(a: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut a = a;
    // SAFETY: a register-only instruction the caller guarantees the CPU has.
    unsafe {
        asm!(
            "sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            a = inout(vreg) a,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    a
}

/// One panel of `n` outputs, the first of them output `o0` of the sink's rows.
///
/// A whole panel (32 outputs) goes through the 2 x 32 tile, a narrower one through the 4 x 16
/// tile ([`Tile::rows_with`]): a last block of 4, 8 or 12 outputs runs it with its last
/// vector's weights repeated, a last rows short of a tile with the last row repeated (as
/// XNNPACK's micro-kernels clamp their row pointers), and only the real rows and vectors reach
/// the sink. The 1-3 outputs a panel leaves past its last whole vector run a 4 x 4 tile, see
/// [`partial_vector`].
///
/// # Safety
/// The CPU must have `dotprod`; `patch` must hold `rows * depth_bytes` values, `w` `depth_bytes * n`, and the
/// sink rows of outputs `o0..o0 + n`.
#[target_feature(enable = "dotprod")]
unsafe fn panel(
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
    let whole = n / 4 * 4;
    // SAFETY: every intrinsic and pointer below: NEON is baseline, `dotprod` the caller's
    // guarantee; rows are clamped to `rows - 1`, vectors to the block's last whole one, so
    // every load stays inside the bounds stated above.
    unsafe {
        // A whole panel of 32 outputs: one tile of 2 rows x 32 (per 4 quads, one `eor` per row
        // for 32 `sdot`, half as many as 4 x 16 takes).
        if whole == 32 {
            let (x, ws) = ((rows, patch, depth_bytes), (w, n, 0));
            block::<2, 8, false>(x, ws, (sink, o0, 0), 8);
        }
        for o in (0..whole).step_by(16).filter(|_| whole != 32) {
            // 16 outputs, or a last 8 or 4 on their own tile (12 as 16, the last repeated).
            let (x, ws) = ((rows, patch, depth_bytes), (w, n, o));
            match ((whole - o) / 4).min(4) {
                1 => block::<4, 1, false>(x, ws, (sink, o0, 0), 1),
                2 => block::<4, 2, false>(x, ws, (sink, o0, 0), 2),
                v => block::<4, 4, false>(x, ws, (sink, o0, 0), v),
            }
        }
        if whole < n {
            partial_vector((rows, patch, depth_bytes), (w, n, whole), (sink, o0));
        }
    }
}

/// Every row of the `vectors` (`<= V`; `1..=4`, or `V`) vectors of outputs from `o`, on the
/// `R`-row, `V`-vector tile (its vectors past `vectors` repeat the last); the patch's rows are
/// the sink's from `first`, as u8 or (`FLIPPED`) already `x - 128`.
///
/// # Safety
/// As for [`panel`], with the outputs inside the panel's whole vectors and the sink's rows
/// from `first`.
#[inline(always)]
unsafe fn block<const R: usize, const V: usize, const FLIPPED: bool>(
    (rows, patch, depth_bytes): (usize, *const u8, usize),
    (w, n, o): (*const i8, usize, usize),
    (sink, o0, first): (&impl Sink, usize, usize),
    vectors: usize,
) {
    let quads = depth_bytes / 4;
    // SAFETY: the caller's preconditions; rows and vectors clamped.
    unsafe {
        let vector = |v: usize| o + 4 * v.min(vectors - 1);
        let back: [int32x4_t; V] = std::array::from_fn(|v| {
            let ov = vector(v);
            sink.back(o0 + ov)
                .unwrap_or_else(|| bias_back(w, n, ov, quads).0)
        });
        let tile = Tile::<R, V> {
            w,
            wq: 4 * n,
            wv: std::array::from_fn(|v| 4 * vector(v)),
        };
        // The channels' constants once for all rows; each tile's sums go to the sink straight
        // from the tile's registers.
        let ch = std::array::from_fn(|v| sink.channels(o0 + vector(v), back[v]));
        let end = ToSink::new((*sink, first), (rows, o0 + o, vectors), ch);
        tile.rows_with::<FLIPPED>((patch, depth_bytes, rows), quads, &end);
    }
}

/// The last `n - o` (1..=3) outputs of a panel, on a 4 x 4 tile: one vector of 4 outputs
/// whose lanes past `n` read the next quad's first outputs (garbage, never put), except in the
/// last quad, whose weights come zero-padded from the stack.
///
/// # Safety
/// As for [`panel`], with `n - 4 < o < n`.
#[inline(always)]
unsafe fn partial_vector(
    (rows, patch, depth_bytes): (usize, *const u8, usize),
    (w, n, o): (*const i8, usize, usize),
    (sink, o0): (&impl Sink, usize),
) {
    let quads = depth_bytes / 4;
    let lanes = n - o;
    // SAFETY: NEON is baseline, `dotprod` the caller's; quads before the last read 16 bytes
    // from output `o` of their row of `n`, which ends inside the next quad's row; the last
    // quad's `lanes` outputs are copied into a 16-byte buffer.
    unsafe {
        let (last, back) = partial_weights(w, n, o, quads);
        let tile = Tile::<4, 1> {
            w: w.add(4 * o),
            wq: 4 * n,
            wv: [0],
        };
        let last_tile = Tile::<4, 1> {
            w: last.as_ptr(),
            wq: 0,
            wv: [0],
        };
        for r0 in (0..rows).step_by(4) {
            let x = clamped_rows(patch, depth_bytes, r0, rows);
            let mut sums = tile.sums(x, quads.saturating_sub(1));
            if quads > 0 {
                let x = x.map(|row| row.add(4 * (quads - 1)));
                last_tile.quad::<false>(&mut sums, x, 0);
            }
            let rows = (r0, (rows - r0).min(4));
            put_lanes(sink, rows, (o0 + o, lanes), sums.map(|s| s[0]), back);
        }
    }
}

/// The weights of a tile of `R` rows x `V` vectors of 4 outputs: quad `q`'s vector `v` (4
/// outputs x 4 bytes) at `w + q * wq + wv[v]`.
struct Tile<const R: usize, const V: usize> {
    w: *const i8,
    wq: usize,
    wv: [usize; V],
}

impl<const R: usize, const V: usize> Tile<R, V> {
    /// The weight vectors of quad `q`. An 8-vector tile is a whole panel, its vectors one
    /// after the other: one address and constant offsets (32 offsets in registers spilled).
    ///
    /// # Safety
    /// The quad's vectors must be inside the weights.
    #[inline(always)]
    unsafe fn w(&self, q: usize) -> [int8x16_t; V] {
        if V == 8 {
            debug_assert!((0..V).all(|v| self.wv[v] == self.wv[0] + 16 * v));
            let at = q * self.wq + self.wv[0];
            // SAFETY: as below, the vectors being 16 bytes apart.
            return std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add(at + 16 * v)) });
        }
        // SAFETY: the caller's preconditions; NEON is baseline.
        std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add(q * self.wq + self.wv[v])) })
    }

    /// Adds quads `q..q + 4` of the 4 rows, `x - 128` in `xq` (16 bytes each), times their
    /// weights into `a`: quad `j` of a row is lane `j` of the indexed `sdot`.
    ///
    /// # Safety
    /// The CPU must have `dotprod` and the caller be compiled with it; the 4 quads' weights
    /// must be readable.
    #[inline(always)]
    unsafe fn step4(&self, a: &mut [[int32x4_t; V]; R], xq: [int8x16_t; R], q: usize) {
        // SAFETY: the caller's preconditions.
        unsafe {
            let w0 = self.w(q);
            for (ar, &xr) in a.iter_mut().zip(&xq) {
                for (av, &wv) in ar.iter_mut().zip(&w0) {
                    *av = sdot::<0>(*av, wv, xr);
                }
            }
            let w1 = self.w(q + 1);
            for (ar, &xr) in a.iter_mut().zip(&xq) {
                for (av, &wv) in ar.iter_mut().zip(&w1) {
                    *av = sdot::<1>(*av, wv, xr);
                }
            }
            let w2 = self.w(q + 2);
            for (ar, &xr) in a.iter_mut().zip(&xq) {
                for (av, &wv) in ar.iter_mut().zip(&w2) {
                    *av = sdot::<2>(*av, wv, xr);
                }
            }
            let w3 = self.w(q + 3);
            for (ar, &xr) in a.iter_mut().zip(&xq) {
                for (av, &wv) in ar.iter_mut().zip(&w3) {
                    *av = sdot::<3>(*av, wv, xr);
                }
            }
        }
    }

    /// Adds quad `q` of the rows at `x` (one quad each, broadcast; `FLIPPED`: `x - 128`
    /// already) times its weights into `a`.
    ///
    /// # Safety
    /// The CPU must have `dotprod` and the caller be compiled with it; the 4 bytes at each
    /// `x[r]` and the quad's weights must be readable.
    #[inline(always)]
    unsafe fn quad<const FLIPPED: bool>(
        &self,
        a: &mut [[int32x4_t; V]; R],
        x: [*const u8; R],
        q: usize,
    ) {
        // SAFETY: the caller's preconditions.
        unsafe {
            let flip = vdupq_n_u8(if FLIPPED { 0 } else { 0x80 });
            let w = self.w(q);
            for (ar, xr) in a.iter_mut().zip(x) {
                let word = (xr as *const u32).read_unaligned();
                let xr =
                    vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(vdupq_n_u32(word)), flip));
                for (av, &wv) in ar.iter_mut().zip(&w) {
                    *av = sdot::<0>(*av, wv, xr);
                }
            }
        }
    }

    /// The sums `sum x * w - 128 * sum w` of the 4 rows at `x` over `quads` quads, 16 outputs:
    /// 4 quads per step (one 16-byte load and `eor` per row; quad `j` of it by the indexed
    /// `sdot`), the last 1-3 one at a time.
    ///
    /// Not inlined: one copy serves every call (inlined into the partial vector's, with its
    /// repeated vector known, LLVM made a narrower loop of it).
    ///
    /// # Safety
    /// The CPU must have `dotprod`; each row must hold `quads` quads and the weights `quads`
    /// quads of the tile's vectors.
    #[inline(never)]
    #[target_feature(enable = "dotprod")]
    unsafe fn sums(&self, x: [*const u8; R], quads: usize) -> [[int32x4_t; V]; R] {
        // SAFETY: the caller's preconditions.
        unsafe { self.sums_inline::<false>(x, quads, [[vdupq_n_s32(0); V]; R]) }
    }

    /// Every `R` rows of the patch's `rows` (a last short tile with the last row repeated)
    /// through the loop of [`Tile::sums`], from `end`'s start ([`TileEnd::start`]: the
    /// accumulators are loaded with it, rather than zeroed and added to it at the end), each
    /// tile's sums handed to `end` in registers: one call and one copy of the loop per caller's
    /// `end` (a sink that requantizes stores bytes without a round trip of the sums through
    /// memory, and with no call per tile).
    ///
    /// # Safety
    /// The CPU must have `dotprod`; the patch must hold `rows` rows of `depth_bytes`
    /// (`4 * quads <= depth_bytes`), the weights `quads` quads of the tile's vectors, and
    /// `end` take every 4 rows from 0 to `rows`.
    #[inline(never)]
    #[target_feature(enable = "dotprod")]
    unsafe fn rows_with<const FLIPPED: bool>(
        &self,
        (patch, depth_bytes, rows): (*const u8, usize, usize),
        quads: usize,
        end: &impl TileEnd<R, V>,
    ) {
        // SAFETY: the caller's preconditions; rows clamped to the last.
        unsafe {
            for r0 in (0..rows).step_by(R) {
                let x = clamped_rows::<R>(patch, depth_bytes, r0, rows);
                end.end(
                    r0,
                    self.sums_inline::<FLIPPED>(x, quads, fresh_copies(end.start())),
                );
            }
        }
    }

    /// [`Tile::sums`] plus `start`, inlined into its caller; `FLIPPED`: of rows that hold
    /// `x - 128` already (no `eor`).
    ///
    /// # Safety
    /// As for [`Tile::sums`], the caller compiled with `dotprod`.
    #[inline(always)]
    unsafe fn sums_inline<const FLIPPED: bool>(
        &self,
        x: [*const u8; R],
        quads: usize,
        start: [[int32x4_t; V]; R],
    ) -> [[int32x4_t; V]; R] {
        // SAFETY: the caller's preconditions; loads stay inside the rows' `quads` quads.
        unsafe {
            let flip = vdupq_n_u8(if FLIPPED { 0 } else { 0x80 });
            let x16 = |at: *const u8| match FLIPPED {
                true => vld1q_s8(at as *const i8),
                false => vreinterpretq_s8_u8(veorq_u8(vld1q_u8(at), flip)),
            };
            let mut a = start;
            let mut q = 0;
            while q + 4 <= quads {
                let xq: [int8x16_t; R] = std::array::from_fn(|r| x16(x[r].add(4 * q)));
                self.step4(&mut a, xq, q);
                q += 4;
            }
            // The last 1-3 quads one at a time, each row's 4 bytes broadcast (no zero-padded
            // copies of rows and weights to make a step of four).
            for j in q..quads {
                self.quad::<FLIPPED>(&mut a, x.map(|row| row.add(4 * j)), j);
            }
            a
        }
    }
}

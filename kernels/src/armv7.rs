//! armv7 NEON twins of the u8-quad kernels, for the 32-bit boards (Raspberry Pi 2/3/4 and
//! Zero 2 W on a 32-bit OS: Cortex-A7, A53 and A72 in AArch32 state).
//!
//! Stable Rust has neither the 32-bit ARM NEON intrinsics nor `#[target_feature(enable =
//! "neon")]` on arm, and the `armv7-unknown-linux-gnueabihf` baseline (VFPv3-D16) has no NEON.
//! So each inner loop is one block of inline assembly over fixed registers, from its first load
//! to the store of its folded sums, assembled for NEON by a `.fpu neon` directive
//! ([`neon_asm!`]), and the kernels are offered only where the kernel reports NEON
//! ([`available`], `AT_HWCAP`). The rest (panels, tails, adding sums to accumulators) is Rust.
//! The compiler knows 16 double registers there: the blocks declare d0-d15 written, and save
//! and restore d16-d31 themselves (`vpush` / `vpop`, once per block).
//!
//! The dot kernel is the aarch64 `smull` scheme on 16 quad registers: `x - 128` (one `veor`
//! with 0x80 per row and pair of quads) times the int8 weights with `vmull.s8`, the second quad
//! of a pair added in i16 by `vmlal.s8` (weights in [-127, 127]: two products fit), then
//! `vpadal.s16` into i32 lanes; `128 * sum w` is added back per output. Tiles of 2 rows x 8
//! outputs (8 accumulators, 16 multiply-accumulates per 3 instructions) and, for 4-output blocks
//! (grouped convolutions with 4 channels per group), 4 rows x 4 outputs. A quad of a row comes
//! in replicated by one `vld1.32 {dN[]}`. A block of outputs whose weights hold -128 takes one
//! quad at a time (`vmull` then `vpadal`), as does an odd last quad.
//!
//! [`requantize_rows`] is [`super::requant::requantize`] on 4 lanes: `vcvt.f32.s32`, `vmul.f32`,
//! the residual's `vmul` and `vadd`, the clamp to +-2^22 (`vmax` / `vmin`), then the same
//! rounding as the definition: `+ 1.5 * 2^23` in f32 (NEON rounds to nearest, ties to even),
//! and the float's bits less those of 1.5 * 2^23 are the integer; NaN lanes (`vceq` of a value
//! with itself) give 0. NEON flushes subnormals to zero where the definition keeps them; every
//! such value rounds to 0 either way.

use super::requant::{LIMIT, MAGIC};
use super::weight_split::split_weights;
use std::arch::asm;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Whether this CPU has NEON (Linux's `HWCAP_NEON` in the auxiliary vector).
pub fn available() -> bool {
    static NEON: OnceLock<bool> = OnceLock::new();
    *NEON.get_or_init(|| {
        const HWCAP_NEON: libc::c_ulong = 1 << 12;
        // SAFETY: getauxval reads the process's auxiliary vector; no pointers involved.
        unsafe { libc::getauxval(libc::AT_HWCAP) & HWCAP_NEON != 0 }
    })
}

/// `asm!` for NEON code: the template assembled with NEON enabled (`.fpu neon`), and d0-d15
/// declared written (the registers the compiler allocates; d16-d31 each block saves itself).
macro_rules! neon_asm {
    ($($t:tt)*) => {
        asm!(
            ".fpu neon",
            $($t)*
            out("d0") _, out("d1") _, out("d2") _, out("d3") _,
            out("d4") _, out("d5") _, out("d6") _, out("d7") _,
            out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
        )
    };
}

/// NEON twin of [`super::generic::dot_u8i8`].
pub fn dot_u8i8_armv7(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
) {
    assert!(available(), "the armv7 NEON kernels need NEON");
    crate::signatures::check_dot_u8i8(rows, (patch, depth_bytes), w, n, acc);
    let quads = depth_bytes / 4;
    for (o0, width) in crate::signatures::panels(n) {
        let wp = &w[o0 * depth_bytes..(o0 + width) * depth_bytes];
        let mut o = 0;
        while o + 8 <= width {
            // SAFETY: outputs o..o + 8 of each of the panel's quads are inside `wp`; each pass
            // is `count` quads from `first` of weights the tile may pair.
            unsafe {
                let block = (wp.as_ptr().add(4 * o), 4 * width, quads, 8);
                passes(block, |wq, ws, first, count, back| {
                    let mut r = 0;
                    while r < rows {
                        let x0 = &patch[r * depth_bytes + 4 * first..];
                        let x1 = if r + 1 < rows {
                            &patch[(r + 1) * depth_bytes + 4 * first..]
                        } else {
                            x0
                        };
                        let at = r * n + o0 + o;
                        let mut out = match r + 2 <= rows {
                            true => TileOut::added(&mut acc[at..at + n + 8], n, back),
                            false => TileOut::sums(),
                        };
                        // Both rows hold `count` quads from `first`, the weights outputs
                        // o..o + 8 of each; the accumulators of both rows are inside the slice
                        // `out` was made from.
                        tile_2x8(x0.as_ptr(), x1.as_ptr(), wq, ws, steps(count), &mut out);
                        if r + 2 > rows {
                            // The tile ran on `out`, made by `TileOut::sums`.
                            let sums = out.left();
                            add_row(&mut acc[at..at + 8], &sums[..8], back);
                        }
                        r += 2;
                    }
                });
            }
            o += 8;
        }
        while o + 4 <= width {
            // SAFETY: outputs o..o + 4 of each of the panel's quads are inside `wp`; as above.
            unsafe {
                let block = (wp.as_ptr().add(4 * o), 4 * width, quads, 4);
                passes(block, |wq, ws, first, count, back| {
                    let mut r = 0;
                    while r < rows {
                        let x = std::array::from_fn(|dr| {
                            patch[(r + dr).min(rows - 1) * depth_bytes + 4 * first..].as_ptr()
                        });
                        let at = r * n + o0 + o;
                        let full = r + 4 <= rows;
                        let mut out = match full {
                            true => TileOut::added(&mut acc[at..at + 3 * n + 4], n, back),
                            false => TileOut::sums(),
                        };
                        // Every row pointer is one of the patch's rows (the last repeated past
                        // the end), each `count` quads long from `first`; a full tile's
                        // accumulators are inside the slice `out` was made from.
                        tile_4x4(x, wq, ws, steps(count), &mut out);
                        if !full {
                            // The tile ran on `out`, made by `TileOut::sums`.
                            let sums = out.left();
                            for (dr, s) in sums.chunks_exact(4).take(rows - r).enumerate() {
                                add_row(&mut acc[at + dr * n..][..4], s, &back[..4]);
                            }
                        }
                        r += 4;
                    }
                });
            }
            o += 4;
        }
        for o in o..width {
            for r in 0..rows {
                let x = &patch[r * depth_bytes..(r + 1) * depth_bytes];
                let s: i32 = x
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| v as i32 * wp[((k / 4) * width + o) * 4 + k % 4] as i32)
                    .sum();
                acc[r * n + o0 + o] += s;
            }
        }
    }
}

/// `acc[o] += sums[o] + back[o]` (a tile's row the assembly left in its sums).
fn add_row(acc: &mut [i32], sums: &[i32], back: &[i32]) {
    for ((a, &s), &b) in acc.iter_mut().zip(sums).zip(back) {
        *a += s + b;
    }
}

/// How a tile walks `quads` quads: `(pairs, singles)`, two at a time with an odd last one
/// alone.
fn steps(quads: usize) -> (usize, usize) {
    (quads / 2, quads % 2)
}

/// Steps the split path ([`passes`]) copies at a time: two copies of 32 bytes per step.
const SPLIT: usize = 128;

/// `128 * sum w` of a block of `width` (8 or 4) outputs, `len` steps `ws` bytes apart from
/// `w`, and whether any of those weights is -128.
///
/// # Safety
/// NEON must be available; the `4 * width` bytes at `w + i * ws` readable for every `i < len`.
unsafe fn block_back(w: *const i8, ws: usize, len: usize, width: usize) -> ([i32; 8], bool) {
    // SAFETY: the caller's preconditions.
    unsafe {
        if width == 8 {
            bias_back_8(w, ws, len)
        } else {
            let (b, m) = bias_back_4(w, ws, len);
            ([b[0], b[1], b[2], b[3], 0, 0, 0, 0], m)
        }
    }
}

/// Runs `pass(w, ws, first, len, back)` over the weights of a block of `width` (8 or 4)
/// outputs, `len` steps `ws` bytes apart from `w`, such that no pass's weights hold -128 (two
/// products of -128 and an input of 0 overflow the paired steps' i16): once on the block's
/// own weights when none is -128, else in chunks of at most [`SPLIT`] steps on two copies
/// that sum to the weights, -128 being -64 in both, every other weight in the first and 0 in
/// the second. Each pass adds its sums (and its `back`, the `128 * sum w` of its weights), so
/// the passes add up to the block's result; such blocks (never written by our quantizer,
/// which uses [-127, 127]) cost two passes.
///
/// # Safety
/// NEON must be available; the `4 * width` bytes at `w + i * ws` readable for every `i < len`.
unsafe fn passes(
    (w, ws, len, width): (*const i8, usize, usize, usize),
    mut pass: impl FnMut(*const i8, usize, usize, usize, &[i32; 8]),
) {
    // SAFETY: the caller's preconditions; the copies hold `n` steps of `bytes`.
    unsafe {
        let (back, min) = block_back(w, ws, len, width);
        if !min {
            return pass(w, ws, 0, len, &back);
        }
        let bytes = 4 * width;
        let (mut most, mut rest) = ([0i8; SPLIT * 32], [0i8; SPLIT * 32]);
        for first in (0..len).step_by(SPLIT) {
            let n = SPLIT.min(len - first);
            for i in 0..n {
                let step = std::slice::from_raw_parts(w.add((first + i) * ws), bytes);
                let at = i * bytes;
                split_weights(step, &mut most[at..at + bytes], &mut rest[at..at + bytes]);
            }
            for copy in [&most, &rest] {
                let (back, _) = block_back(copy.as_ptr(), bytes, n, width);
                pass(copy.as_ptr(), bytes, first, n, &back);
            }
        }
    }
}

/// Where a tile's sums go: with `acc` null, into `sums` (row by row); else added, with
/// `back[o]`, to the accumulators of its rows at `acc`, `ldc` bytes apart (every row of the
/// tile must be one of the call's). The assembly reads `acc`, `ldc` and `back` at offsets 64,
/// 68 and 72.
/// (`sums` starts uninitialized: zeroing it was a `memset` call per tile.)
#[repr(C)]
struct TileOut {
    sums: MaybeUninit<[i32; 16]>,
    acc: *mut i32,
    ldc: usize,
    back: *const i32,
}

const _: () = assert!(
    std::mem::offset_of!(TileOut, acc) == 64
        && std::mem::offset_of!(TileOut, ldc) == 68
        && std::mem::offset_of!(TileOut, back) == 72
);

impl TileOut {
    /// Sums left in [`TileOut::sums`].
    fn sums() -> Self {
        TileOut {
            sums: MaybeUninit::uninit(),
            acc: std::ptr::null_mut(),
            ldc: 0,
            back: std::ptr::null(),
        }
    }

    /// Sums added to the accumulators from `acc` on (rows `ldc` values apart), with `back`.
    fn added(acc: &mut [i32], ldc: usize, back: &[i32]) -> Self {
        TileOut {
            sums: MaybeUninit::uninit(),
            acc: acc.as_mut_ptr(),
            ldc: 4 * ldc,
            back: back.as_ptr(),
        }
    }

    /// The sums a tile made with [`TileOut::sums`] left.
    ///
    /// # Safety
    /// A tile must have run on `self`, made by [`TileOut::sums`].
    unsafe fn left(&self) -> &[i32; 16] {
        // SAFETY: the caller guarantees a tile stored its 16 sums there (`acc` null).
        unsafe { self.sums.assume_init_ref() }
    }
}

/// `128 * sum_q w[q][o]` for outputs `o..o + 8` (`w` points at output `o` of quad 0, quads
/// `ws` bytes apart), and whether any of those weights is -128.
///
/// # Safety
/// NEON must be available; the 32 bytes at `w + q * ws` must be readable for every `q < quads`.
#[inline]
unsafe fn bias_back_8(w: *const i8, ws: usize, quads: usize) -> ([i32; 8], bool) {
    let mut sums = [0i32; 8];
    let mut mins = [0i8; 16];
    // SAFETY: the caller guarantees the weights; `sums` and `mins` are 32 and 16 bytes; NEON is available (the public entry asserted it); every register written is declared.
    unsafe {
        neon_asm!(
            "vpush {{d16-d31}}",
            "vmov.i32 q8, #0",
            "vmov.i32 q9, #0",
            "vmov.i8 q10, #0",
            "cmp {quads}, #0",
            "beq 3f",
            "2:",
            "vld1.8 {{d0-d3}}, [{w}], {ws}",
            "vpaddl.s8 q2, q0",
            "vpaddl.s8 q3, q1",
            "vmin.s8 q10, q10, q0",
            "vmin.s8 q10, q10, q1",
            "vpadal.s16 q8, q2",
            "vpadal.s16 q9, q3",
            "subs {quads}, {quads}, #1",
            "bne 2b",
            "3:",
            "vshl.i32 q8, q8, #7",
            "vshl.i32 q9, q9, #7",
            "vst1.32 {{d16-d19}}, [{sums}]",
            "vst1.8 {{d20-d21}}, [{mins}]",
            "vpop {{d16-d31}}",
            w = inout(reg) w => _,
            ws = in(reg) ws,
            quads = inout(reg) quads => _,
            sums = in(reg) sums.as_mut_ptr(),
            mins = in(reg) mins.as_mut_ptr(),
        );
    }
    (sums, mins.contains(&i8::MIN))
}

/// [`bias_back_8`] for outputs `o..o + 4` (16 bytes per quad).
///
/// # Safety
/// NEON must be available; the 16 bytes at `w + q * ws` must be readable for every `q < quads`.
#[inline]
unsafe fn bias_back_4(w: *const i8, ws: usize, quads: usize) -> ([i32; 4], bool) {
    let mut sums = [0i32; 4];
    let mut mins = [0i8; 16];
    // SAFETY: as for `bias_back_8`, with 16 bytes per quad and 16 bytes of sums.
    unsafe {
        neon_asm!(
            "vpush {{d16-d31}}",
            "vmov.i32 q8, #0",
            "vmov.i8 q10, #0",
            "cmp {quads}, #0",
            "beq 3f",
            "2:",
            "vld1.8 {{d0-d1}}, [{w}], {ws}",
            "vpaddl.s8 q2, q0",
            "vmin.s8 q10, q10, q0",
            "vpadal.s16 q8, q2",
            "subs {quads}, {quads}, #1",
            "bne 2b",
            "3:",
            "vshl.i32 q8, q8, #7",
            "vst1.32 {{d16-d17}}, [{sums}]",
            "vst1.8 {{d20-d21}}, [{mins}]",
            "vpop {{d16-d31}}",
            w = inout(reg) w => _,
            ws = in(reg) ws,
            quads = inout(reg) quads => _,
            sums = in(reg) sums.as_mut_ptr(),
            mins = in(reg) mins.as_mut_ptr(),
        );
    }
    (sums, mins.contains(&i8::MIN))
}

/// The frame every tile shares: accumulators q8-q15 zeroed, `pairs` iterations of the pair
/// step, then the single step if `singles` is 1 (an odd last quad; no loop), the accumulators folded into d0-d7 (`vpadd`: one i32 per
/// output; then the `fold` lines), then either added to the accumulators in memory by the `add` lines (`{pairs}` holds
/// [`TileOut::acc`], `{singles}` the row stride, `{w}` `back`) or stored in [`TileOut::sums`].
macro_rules! tile_asm {
    (
        [$($pair:literal),*],
        [$($single:literal),*],
        [$($fold:literal),*],
        [$($add:literal),*],
        $($operands:tt)*
    ) => {
        neon_asm!(
            "vpush {{d16-d31}}",
            "vmov.i32 q8, #0",
            "vmov.i32 q9, #0",
            "vmov.i32 q10, #0",
            "vmov.i32 q11, #0",
            "vmov.i32 q12, #0",
            "vmov.i32 q13, #0",
            "vmov.i32 q14, #0",
            "vmov.i32 q15, #0",
            "cmp {pairs}, #0",
            "beq 3f",
            "2:",
            $($pair,)*
            "subs {pairs}, {pairs}, #1",
            "bne 2b",
            "3:",
            "cmp {singles}, #0",
            "beq 5f",
            $($single,)*
            "5:",
            "vpadd.i32 d0, d16, d17",
            "vpadd.i32 d1, d18, d19",
            "vpadd.i32 d2, d20, d21",
            "vpadd.i32 d3, d22, d23",
            "vpadd.i32 d4, d24, d25",
            "vpadd.i32 d5, d26, d27",
            "vpadd.i32 d6, d28, d29",
            "vpadd.i32 d7, d30, d31",
            $($fold,)*
            "ldr {pairs}, [{out}, #64]",
            "cmp {pairs}, #0",
            "beq 6f",
            "ldr {singles}, [{out}, #68]",
            "ldr {w}, [{out}, #72]",
            $($add,)*
            "b 7f",
            "6:",
            "vst1.32 {{d0-d3}}, [{out}]!",
            "vst1.32 {{d4-d7}}, [{out}]",
            "7:",
            "vpop {{d16-d31}}",
            $($operands)*
        )
    };
}

/// The 2-row x 8-output tile in assembly: `sum_q (x[r][q] - 128) . w[q][o]`, `w` at output `o`
/// of quad 0 (quads `ws` bytes apart), `pairs` steps of two quads, then `singles` steps of
/// one; into `out` as [`TileOut`] says (`sums[r * 8 + o]`). The caller's loads put quad `q` of
/// row 0 in d8 and of row 1 in d10, and quad `q + 1` in d9 and d11 (only d8 and d10 in a single
/// step).
///
/// Registers: weights d0-d7 (two quads of 8 outputs), rows' quads d8-d11, products q6-q7,
/// accumulators q8-q15 (row 0: q8-q11, two outputs each as `[o t01, o t23, o+1 t01, o+1 t23]`).
macro_rules! tile_2x8_asm {
    (
        [$($pair:literal),*],
        [$($single:literal),*],
        [$($fold:literal),*],
        $($operands:tt)*
    ) => {
        tile_asm!(
            [
                "vld1.8 {{d0-d3}}, [{w}], {ws}",
                "vld1.8 {{d4-d7}}, [{w}], {ws}",
                $($pair,)*
                "vmov.i8 q6, #0x80",
                "veor q4, q4, q6",
                "veor q5, q5, q6",
                "vmull.s8 q6, d0, d8",
                "vmull.s8 q7, d1, d8",
                "vmlal.s8 q6, d4, d9",
                "vmlal.s8 q7, d5, d9",
                "vpadal.s16 q8, q6",
                "vpadal.s16 q9, q7",
                "vmull.s8 q6, d2, d8",
                "vmull.s8 q7, d3, d8",
                "vmlal.s8 q6, d6, d9",
                "vmlal.s8 q7, d7, d9",
                "vpadal.s16 q10, q6",
                "vpadal.s16 q11, q7",
                "vmull.s8 q6, d0, d10",
                "vmull.s8 q7, d1, d10",
                "vmlal.s8 q6, d4, d11",
                "vmlal.s8 q7, d5, d11",
                "vpadal.s16 q12, q6",
                "vpadal.s16 q13, q7",
                "vmull.s8 q6, d2, d10",
                "vmull.s8 q7, d3, d10",
                "vmlal.s8 q6, d6, d11",
                "vmlal.s8 q7, d7, d11",
                "vpadal.s16 q14, q6",
                "vpadal.s16 q15, q7"
            ],
            [
                "vld1.8 {{d0-d3}}, [{w}], {ws}",
                $($single,)*
                "vmov.i8 d12, #0x80",
                "veor d8, d8, d12",
                "veor d10, d10, d12",
                "vmull.s8 q6, d0, d8",
                "vmull.s8 q7, d1, d8",
                "vpadal.s16 q8, q6",
                "vpadal.s16 q9, q7",
                "vmull.s8 q6, d2, d8",
                "vmull.s8 q7, d3, d8",
                "vpadal.s16 q10, q6",
                "vpadal.s16 q11, q7",
                "vmull.s8 q6, d0, d10",
                "vmull.s8 q7, d1, d10",
                "vpadal.s16 q12, q6",
                "vpadal.s16 q13, q7",
                "vmull.s8 q6, d2, d10",
                "vmull.s8 q7, d3, d10",
                "vpadal.s16 q14, q6",
                "vpadal.s16 q15, q7"
            ],
            [$($fold),*],
            [
                "vld1.32 {{d16-d19}}, [{w}]",
                "vadd.i32 q0, q0, q8",
                "vadd.i32 q1, q1, q9",
                "vadd.i32 q2, q2, q8",
                "vadd.i32 q3, q3, q9",
                "vld1.32 {{d16-d19}}, [{pairs}]",
                "vadd.i32 q0, q0, q8",
                "vadd.i32 q1, q1, q9",
                "vst1.32 {{d0-d3}}, [{pairs}], {singles}",
                "vld1.32 {{d16-d19}}, [{pairs}]",
                "vadd.i32 q2, q2, q8",
                "vadd.i32 q3, q3, q9",
                "vst1.32 {{d4-d7}}, [{pairs}]"
            ],
            $($operands)*
        )
    };
}

/// The 4-row x 4-output tile in assembly, as [`tile_2x8_asm!`] (`sums[r * 4 + o]`): the
/// caller's loads put quad `q` of row `r` in d(4 + 2r) and quad `q + 1` in d(5 + 2r).
/// Registers: weights d0-d3, rows' quads d4-d11, products q6-q7, accumulators q8-q15.
macro_rules! tile_4x4_asm {
    ([$($pair:literal),*], [$($single:literal),*], $($operands:tt)*) => {
        tile_asm!(
            [
                "vld1.8 {{d0-d1}}, [{w}], {ws}",
                "vld1.8 {{d2-d3}}, [{w}], {ws}",
                $($pair,)*
                "vmov.i8 q6, #0x80",
                "veor q2, q2, q6",
                "veor q3, q3, q6",
                "veor q4, q4, q6",
                "veor q5, q5, q6",
                "vmull.s8 q6, d0, d4",
                "vmull.s8 q7, d1, d4",
                "vmlal.s8 q6, d2, d5",
                "vmlal.s8 q7, d3, d5",
                "vpadal.s16 q8, q6",
                "vpadal.s16 q9, q7",
                "vmull.s8 q6, d0, d6",
                "vmull.s8 q7, d1, d6",
                "vmlal.s8 q6, d2, d7",
                "vmlal.s8 q7, d3, d7",
                "vpadal.s16 q10, q6",
                "vpadal.s16 q11, q7",
                "vmull.s8 q6, d0, d8",
                "vmull.s8 q7, d1, d8",
                "vmlal.s8 q6, d2, d9",
                "vmlal.s8 q7, d3, d9",
                "vpadal.s16 q12, q6",
                "vpadal.s16 q13, q7",
                "vmull.s8 q6, d0, d10",
                "vmull.s8 q7, d1, d10",
                "vmlal.s8 q6, d2, d11",
                "vmlal.s8 q7, d3, d11",
                "vpadal.s16 q14, q6",
                "vpadal.s16 q15, q7"
            ],
            [
                "vld1.8 {{d0-d1}}, [{w}], {ws}",
                $($single,)*
                "vmov.i8 d12, #0x80",
                "veor d4, d4, d12",
                "veor d6, d6, d12",
                "veor d8, d8, d12",
                "veor d10, d10, d12",
                "vmull.s8 q6, d0, d4",
                "vmull.s8 q7, d1, d4",
                "vpadal.s16 q8, q6",
                "vpadal.s16 q9, q7",
                "vmull.s8 q6, d0, d6",
                "vmull.s8 q7, d1, d6",
                "vpadal.s16 q10, q6",
                "vpadal.s16 q11, q7",
                "vmull.s8 q6, d0, d8",
                "vmull.s8 q7, d1, d8",
                "vpadal.s16 q12, q6",
                "vpadal.s16 q13, q7",
                "vmull.s8 q6, d0, d10",
                "vmull.s8 q7, d1, d10",
                "vpadal.s16 q14, q6",
                "vpadal.s16 q15, q7"
            ],
            [],
            [
                "vld1.32 {{d16-d17}}, [{w}]",
                "vadd.i32 q0, q0, q8",
                "vadd.i32 q1, q1, q8",
                "vadd.i32 q2, q2, q8",
                "vadd.i32 q3, q3, q8",
                "vld1.32 {{d18-d19}}, [{pairs}]",
                "vadd.i32 q0, q0, q9",
                "vst1.32 {{d0-d1}}, [{pairs}], {singles}",
                "vld1.32 {{d18-d19}}, [{pairs}]",
                "vadd.i32 q1, q1, q9",
                "vst1.32 {{d2-d3}}, [{pairs}], {singles}",
                "vld1.32 {{d18-d19}}, [{pairs}]",
                "vadd.i32 q2, q2, q9",
                "vst1.32 {{d4-d5}}, [{pairs}], {singles}",
                "vld1.32 {{d18-d19}}, [{pairs}]",
                "vadd.i32 q3, q3, q9",
                "vst1.32 {{d6-d7}}, [{pairs}]"
            ],
            $($operands)*
        )
    };
}

/// [`tile_2x8_asm!`] on two patch rows read in sequence.
///
/// # Safety
/// NEON must be available; each row must hold `2 * pairs + singles` quads; the 32 bytes at
/// `w + q * ws` must be readable for each of them.
#[inline]
unsafe fn tile_2x8(
    x0: *const u8,
    x1: *const u8,
    w: *const i8,
    ws: usize,
    (pairs, singles): (usize, usize),
    out: &mut TileOut,
) {
    // SAFETY: the caller guarantees the rows and weights; `sums` is 64 bytes; NEON is
    // available (the public entry asserted it); every register written is
    // declared or saved.
    unsafe {
        tile_2x8_asm!(
            [
                "vld1.32 {{d8[]}}, [{x0}]!",
                "vld1.32 {{d9[]}}, [{x0}]!",
                "vld1.32 {{d10[]}}, [{x1}]!",
                "vld1.32 {{d11[]}}, [{x1}]!"
            ],
            ["vld1.32 {{d8[]}}, [{x0}]!", "vld1.32 {{d10[]}}, [{x1}]!"],
            [],
            w = inout(reg) w => _,
            ws = in(reg) ws,
            x0 = inout(reg) x0 => _,
            x1 = inout(reg) x1 => _,
            pairs = inout(reg) pairs => _,
            singles = inout(reg) singles => _,
            out = inout(reg) out as *mut TileOut => _,
        );
    }
}

/// [`tile_4x4_asm!`] on four patch rows read in sequence.
///
/// # Safety
/// NEON must be available; each row must hold `2 * pairs + singles` quads; the 16 bytes at
/// `w + q * ws` must be readable for each of them.
#[inline]
unsafe fn tile_4x4(
    x: [*const u8; 4],
    w: *const i8,
    ws: usize,
    (pairs, singles): (usize, usize),
    out: &mut TileOut,
) {
    // SAFETY: as for `tile_2x8`.
    unsafe {
        tile_4x4_asm!(
            [
                "vld1.32 {{d4[]}}, [{x0}]!",
                "vld1.32 {{d5[]}}, [{x0}]!",
                "vld1.32 {{d6[]}}, [{x1}]!",
                "vld1.32 {{d7[]}}, [{x1}]!",
                "vld1.32 {{d8[]}}, [{x2}]!",
                "vld1.32 {{d9[]}}, [{x2}]!",
                "vld1.32 {{d10[]}}, [{x3}]!",
                "vld1.32 {{d11[]}}, [{x3}]!"
            ],
            [
                "vld1.32 {{d4[]}}, [{x0}]!",
                "vld1.32 {{d6[]}}, [{x1}]!",
                "vld1.32 {{d8[]}}, [{x2}]!",
                "vld1.32 {{d10[]}}, [{x3}]!"
            ],
            w = inout(reg) w => _,
            ws = in(reg) ws,
            x0 = inout(reg) x[0] => _,
            x1 = inout(reg) x[1] => _,
            x2 = inout(reg) x[2] => _,
            x3 = inout(reg) x[3] => _,
            pairs = inout(reg) pairs => _,
            singles = inout(reg) singles => _,
            out = inout(reg) out as *mut TileOut => _,
        );
    }
}

/// [`tile_2x8_asm!`] on two pixels of a direct convolution: step `i`'s quad of pixel 0 at
/// `x0 + steps[i]`, of pixel 1 `ps` bytes further (0: the same pixel twice).
///
/// # Safety
/// NEON must be available; `steps` must hold `2 * pairs + singles` offsets, each quad (and the one
/// `ps` further) readable; the 32 bytes at `w + i * ws` readable for each step.
#[inline]
unsafe fn direct_2x8(
    (x0, ps, steps): (*const u8, usize, *const usize),
    w: *const i8,
    ws: usize,
    (pairs, singles): (usize, usize),
    out: &mut TileOut,
) {
    // SAFETY: as for `tile_2x8`, with the caller's step offsets.
    unsafe {
        tile_2x8_asm!(
            [
                "ldr {t}, [{steps}], #4",
                "add {t}, {t}, {x0}",
                "vld1.32 {{d8[]}}, [{t}], {ps}",
                "vld1.32 {{d10[]}}, [{t}]",
                "ldr {t}, [{steps}], #4",
                "add {t}, {t}, {x0}",
                "vld1.32 {{d9[]}}, [{t}], {ps}",
                "vld1.32 {{d11[]}}, [{t}]"
            ],
            [
                "ldr {t}, [{steps}], #4",
                "add {t}, {t}, {x0}",
                "vld1.32 {{d8[]}}, [{t}], {ps}",
                "vld1.32 {{d10[]}}, [{t}]"
            ],
            [],
            w = inout(reg) w => _,
            ws = in(reg) ws,
            x0 = in(reg) x0,
            ps = in(reg) ps,
            steps = inout(reg) steps => _,
            t = out(reg) _,
            pairs = inout(reg) pairs => _,
            singles = inout(reg) singles => _,
            out = inout(reg) out as *mut TileOut => _,
        );
    }
}

/// [`tile_2x8_asm!`] on two pixels of a direct convolution with 4 channels per group, two
/// groups at a time: step `i` of a pixel is one plain 8-byte load of both groups' quads
/// (`[a, b]`: no load-and-replicate, which costs the A72 a third micro-op and the 4 x 4 tile
/// its peak), against weights interleaved by [`interleave_groups`] (8 bytes `[a's output j,
/// b's output j]` per weight register); `vuzp` puts the sums back in output order.
///
/// # Safety
/// As for [`direct_2x8`], the 8 bytes of each step of both pixels readable, the weights as
/// [`interleave_groups`] wrote them.
#[inline]
unsafe fn direct_2x8_groups4(
    (x0, ps, steps): (*const u8, usize, *const usize),
    w: *const i8,
    ws: usize,
    (pairs, singles): (usize, usize),
    out: &mut TileOut,
) {
    // SAFETY: as for `tile_2x8`, with the caller's step offsets.
    unsafe {
        tile_2x8_asm!(
            [
                "ldr {t}, [{steps}], #4",
                "add {t}, {t}, {x0}",
                "vld1.8 {{d8}}, [{t}], {ps}",
                "vld1.8 {{d10}}, [{t}]",
                "ldr {t}, [{steps}], #4",
                "add {t}, {t}, {x0}",
                "vld1.8 {{d9}}, [{t}], {ps}",
                "vld1.8 {{d11}}, [{t}]"
            ],
            [
                "ldr {t}, [{steps}], #4",
                "add {t}, {t}, {x0}",
                "vld1.8 {{d8}}, [{t}], {ps}",
                "vld1.8 {{d10}}, [{t}]"
            ],
            ["vuzp.32 q0, q1", "vuzp.32 q2, q3"],
            w = inout(reg) w => _,
            ws = in(reg) ws,
            x0 = in(reg) x0,
            ps = in(reg) ps,
            steps = inout(reg) steps => _,
            t = out(reg) _,
            pairs = inout(reg) pairs => _,
            singles = inout(reg) singles => _,
            out = inout(reg) out as *mut TileOut => _,
        );
    }
}

/// The weights of two 4-channel groups' 8 outputs (`[a0 a1 a2 a3 b0 b1 b2 b3]`, 4 bytes each,
/// per step, `ws` bytes apart) for `len` steps as [`direct_2x8_groups4`] takes them:
/// `[a0 b0 a1 b1 a2 b2 a3 b3]`, 32 bytes per step.
///
/// # Safety
/// The 32 bytes at `w + i * ws` must be readable for every `i < len`, `len <= MAX_STEPS`.
unsafe fn interleave_groups(w: *const i8, ws: usize, len: usize, to: &mut [i8; MAX_STEPS * 32]) {
    for i in 0..len {
        // SAFETY: the caller's preconditions.
        let from = unsafe { std::slice::from_raw_parts(w.add(i * ws), 32) };
        for j in 0..4 {
            to[32 * i + 8 * j..][..4].copy_from_slice(&from[4 * j..][..4]);
            to[32 * i + 8 * j + 4..][..4].copy_from_slice(&from[16 + 4 * j..][..4]);
        }
    }
}

/// Steps a direct kernel walks in one go (their offsets live on the stack); longer windows
/// (deep dense convolutions) are taken in several, each adding its sums.
const MAX_STEPS: usize = 256;

/// NEON twin of [`super::generic::direct_u8`]: blocks of 8 output channels of one group (or
/// of two groups of 4, [`direct_2x8_groups4`]; a dense convolution's last 4 as 8 with zero
/// weights), 2 pixels at a time, walking the window as a list of steps (tap, input quad), each
/// step's offset from the pixel computed once per call; the weights of a block follow one
/// another at a fixed stride ([`crate::signatures::DirectShape::weight_at`]).
pub fn direct_u8_armv7(
    s: &crate::signatures::DirectShape,
    xp: &[u8],
    pixels: usize,
    w: &[i8],
    acc: &mut [i32],
) {
    assert!(available(), "the armv7 NEON kernels need NEON");
    assert!(s.fits(pixels, xp.len(), w.len(), acc.len()));
    if pixels == 0 {
        return;
    }
    let (k, cinq) = (s.kernel, s.cin / 4);
    let total = k * k * cinq;
    let ps = s.stride * s.in_c;
    // Uninitialized beyond each walk's steps (zeroing it was a `memset` call per call).
    let mut offsets = [MaybeUninit::<usize>::uninit(); MAX_STEPS];
    let offset = |step: usize| {
        let (tap, q) = (step / cinq, step % cinq);
        tap / k * s.row + tap % k * s.in_c + 4 * q
    };
    // A block's weights rearranged for the tile (4-channel groups, a last 4 outputs).
    let mut inter = [0i8; MAX_STEPS * 32];
    for first in (0..total).step_by(MAX_STEPS) {
        let len = MAX_STEPS.min(total - first);
        for (i, off) in offsets[..len].iter_mut().enumerate() {
            off.write(offset(first + i));
        }
        let mut o = 0;
        while o < s.out_c {
            let same_block = |n: usize| {
                o + n <= s.out_c && o / s.cout == (o + n - 1) / s.cout && o / 16 == (o + n - 1) / 16
            };
            // Two groups of 4 channels at a time (ResNeXt 32x4d's first stage), one 8-byte
            // load per pixel and step for both ([`direct_2x8_groups4`]).
            let groups4 = s.cin == 4
                && s.cout == 4
                && s.cout != s.out_c
                && o + 8 <= s.out_c
                && o / 16 == (o + 7) / 16;
            let width = if same_block(8) || groups4 {
                8
            } else if same_block(4) {
                4
            } else {
                1
            };
            let x = xp[o / s.cout * s.cin..].as_ptr();
            if width == 1 {
                for p in 0..pixels {
                    let mut sum = 0i32;
                    for i in 0..len {
                        let (tap, q) = ((first + i) / cinq, (first + i) % cinq);
                        let off = offset(first + i);
                        let wq = &w[s.weight_at(tap, q, o)..][..4];
                        let xq = &xp[p * ps + o / s.cout * s.cin + off..][..4];
                        sum += xq
                            .iter()
                            .zip(wq)
                            .map(|(&a, &b)| a as i32 * b as i32)
                            .sum::<i32>();
                    }
                    acc[p * s.out_c + o] += sum;
                }
                o += 1;
                continue;
            }
            let ws = 4 * 16.min(s.out_c - o / 16 * 16);
            let (tap, q) = (first / cinq, first % cinq);
            let wb = w[s.weight_at(tap, q, o)..].as_ptr();
            // SAFETY: the window's steps from `first` are inside `w` (`fits`), at `ws` bytes
            // from one another for the block's outputs (`weight_at`), the block within one
            // block of 16 (`same_block`, `groups4`); each pass is `count` of those steps (or of
            // their interleaved copy) from `from`.
            unsafe {
                let block = if groups4 {
                    interleave_groups(wb, ws, len, &mut inter);
                    (inter.as_ptr(), 32, len, 8)
                } else if width == 4 {
                    // A dense convolution's last 4 outputs: the 2 x 8 tile on a copy of their
                    // weights padded with 4 outputs of zeros, its sums taken row by row.
                    for i in 0..len {
                        let from = std::slice::from_raw_parts(wb.add(i * ws), 16);
                        inter[32 * i..][..16].copy_from_slice(from);
                        inter[32 * i + 16..][..16].fill(0);
                    }
                    (inter.as_ptr(), 32, len, 8)
                } else {
                    (wb, ws, len, width)
                };
                passes(block, |wq, ws, from, count, back| {
                    // The interleaved weights' `128 * sum w` in output order.
                    let back = &match groups4 {
                        true => [0, 2, 4, 6, 1, 3, 5, 7].map(|j| back[j]),
                        false => *back,
                    };
                    let walk = steps(count);
                    let mut p = 0;
                    while p < pixels {
                        // Whole tiles of pixels, then one pixel at a time (repeated over the
                        // tile).
                        let (n, step) = if p + 2 <= pixels { (2, ps) } else { (1, 0) };
                        let at = p * s.out_c + o;
                        let mut out = match (n, width) {
                            (1, _) | (_, 4) => TileOut::sums(),
                            _ => TileOut::added(
                                &mut acc[at..at + (n - 1) * s.out_c + width],
                                s.out_c,
                                back,
                            ),
                        };
                        // Pixels p..p + n and their windows are inside `xp` (`fits`); a
                        // repeated pixel reads the same bytes; the tile reads the walk's
                        // `count` offsets from `from`, all written above; a whole tile's
                        // accumulators are inside the slice `out` was made from.
                        let offs = (offsets.as_ptr() as *const usize).add(from);
                        let pix = (x.add(p * ps), step, offs);
                        if groups4 {
                            direct_2x8_groups4(pix, wq, ws, walk, &mut out);
                        } else {
                            direct_2x8(pix, wq, ws, walk, &mut out);
                        }
                        if n == 1 || width == 4 {
                            // The tile ran on `out`, made by `TileOut::sums`.
                            let sums = out.left();
                            for (r, row) in sums.chunks_exact(8).take(n).enumerate() {
                                let at = at + r * s.out_c;
                                add_row(&mut acc[at..at + width], &row[..width], back);
                            }
                        }
                        p += n;
                    }
                });
            }
            o += width;
        }
    }
}

/// The per-call constants of [`requantize_rows`]'s vector loop, loaded into q8-q15 (each
/// replicated over 4 lanes), in this order.
#[repr(C)]
struct Consts {
    neg_limit: f32,
    limit: f32,
    magic: f32,
    magic_bits: i32,
    zero: i32,
    lo: i32,
    hi: i32,
    residual_zero: i32,
    residual_multiplier: f32,
}

/// Rows of requantized outputs: `out[r * width + o] = requantize(acc[r * width + o],
/// multiplier[o], residual[r * width + o], (zero, lo, hi))` for the `width = multiplier.len()`
/// channels of each whole row in `out` ([`super::requant::requantize`], the accumulators' bias
/// already in), 4 channels per step and the scalar definition for a row's last `width % 4`.
/// The residual term is added when `rq` has one and `residual` is given, as the definition's
/// `zip`. One call of the assembly for all rows when the width is a multiple of 4.
pub fn requantize_rows(
    acc: &[i32],
    multiplier: &[f32],
    rq: (i32, i32, i32, Option<(i32, f32)>),
    residual: Option<&[u8]>,
    out: &mut [u8],
) {
    assert!(available(), "the armv7 NEON kernels need NEON");
    let (zero, lo, hi, res_q) = rq;
    let (len, width) = (out.len(), multiplier.len());
    assert!(width > 0 && len.is_multiple_of(width) && acc.len() >= len);
    assert!(residual.is_none_or(|r| r.len() >= len));
    let with_residual = res_q.zip(residual);
    let (rz, rm) = res_q.unwrap_or((0, 0.0));
    let c = Consts {
        neg_limit: -LIMIT,
        limit: LIMIT,
        magic: MAGIC,
        magic_bits: MAGIC.to_bits() as i32,
        zero,
        lo,
        hi,
        residual_zero: rz,
        residual_multiplier: rm,
    };
    let (rows, steps) = (len / width, width / 4);
    // Whole rows in one go when they follow one another step by step, else row by row.
    let (calls, rows_per_call) = if width.is_multiple_of(4) {
        (1, rows)
    } else {
        (rows, 1)
    };
    if steps > 0 && rows > 0 {
        for call in 0..calls {
            let at = call * rows_per_call * width;
            let res = residual.map_or(std::ptr::null(), |r| r[at..].as_ptr());
            let bufs = (acc[at..].as_ptr(), res, out[at..].as_mut_ptr());
            // SAFETY: from `at`, `acc`, `out` (and `residual`, read only when given) hold
            // `rows_per_call` rows of `width >= 4 * steps` values, `multiplier` `4 * steps`
            // (asserted above); `c` is 36 readable bytes; NEON is available (asserted above); every register written is declared or saved.
            unsafe {
                requantize_steps(
                    bufs,
                    multiplier.as_ptr(),
                    (rows_per_call, steps),
                    &c,
                    with_residual.is_some(),
                );
            }
        }
    }
    if !width.is_multiple_of(4) {
        for r in 0..rows {
            for (o, &m) in multiplier.iter().enumerate().skip(4 * steps) {
                let at = r * width + o;
                let res = with_residual.map(|((rz, rm), res)| (res[at], rz, rm));
                out[at] = super::requant::requantize(acc[at], m, res, (zero, lo, hi));
            }
        }
    }
}

/// The vector loops of [`requantize_rows`]: `rows` rows of `steps` x 4 channels, `(acc,
/// residual, out)` advancing step by step from row to row, `m` starting over each row; the
/// residual term when `residual_term`.
///
/// # Safety
/// NEON must be available; `acc` and `out` must hold `rows * steps * 4` values, `m` `steps * 4`,
/// `residual` (when `residual_term`) `rows * steps * 4` bytes; `rows` and `steps` at least 1.
#[inline]
unsafe fn requantize_steps(
    (acc, residual, out): (*const i32, *const u8, *mut u8),
    m: *const f32,
    (rows, steps): (usize, usize),
    c: &Consts,
    residual_term: bool,
) {
    // SAFETY: the caller guarantees the buffers and counts; NEON is available (`requantize_rows`
    // asserted it); every register written is declared or saved.
    unsafe {
        if residual_term {
            neon_asm!(
                "vpush {{d16-d31}}",
                "vld1.32 {{d0-d3}}, [{c}]!",
                "vld1.32 {{d4[]}}, [{c}]",
                "vdup.32 q8, d0[0]",
                "vdup.32 q9, d0[1]",
                "vdup.32 q10, d1[0]",
                "vdup.32 q11, d1[1]",
                "vdup.32 q12, d2[0]",
                "vdup.32 q13, d2[1]",
                "vdup.32 q14, d3[0]",
                "vdup.32 q15, d3[1]",
                "vdup.32 q7, d4[0]",
                "2:",
                "mov {m}, {m0}",
                "mov {n}, {steps}",
                "3:",
                "vld1.32 {{d0-d1}}, [{acc}]!",
                "vld1.32 {{d2-d3}}, [{m}]!",
                "vld1.32 {{d4[0]}}, [{res}]!",
                "vcvt.f32.s32 q0, q0",
                "vmovl.u8 q2, d4",
                "vmul.f32 q0, q0, q1",
                "vmovl.u16 q2, d4",
                "vsub.i32 q2, q2, q15",
                "vcvt.f32.s32 q2, q2",
                "vmul.f32 q2, q2, q7",
                "vadd.f32 q0, q0, q2",
                "vmax.f32 q0, q0, q8",
                "vmin.f32 q0, q0, q9",
                "vceq.f32 q1, q0, q0",
                "vadd.f32 q0, q0, q10",
                "vsub.i32 q0, q0, q11",
                "vand q0, q0, q1",
                "vadd.i32 q0, q0, q12",
                "vmax.s32 q0, q0, q13",
                "vmin.s32 q0, q0, q14",
                "vmovn.i32 d0, q0",
                "vmovn.i16 d0, q0",
                "vst1.32 {{d0[0]}}, [{out}]!",
                "subs {n}, {n}, #1",
                "bne 3b",
                "subs {rows}, {rows}, #1",
                "bne 2b",
                "vpop {{d16-d31}}",
                c = inout(reg) c as *const Consts => _,
                acc = inout(reg) acc => _,
                m0 = in(reg) m,
                m = out(reg) _,
                res = inout(reg) residual => _,
                out = inout(reg) out => _,
                steps = in(reg) steps,
                n = out(reg) _,
                rows = inout(reg) rows => _,
            );
        } else {
            neon_asm!(
                "vpush {{d16-d31}}",
                "vld1.32 {{d0-d3}}, [{c}]",
                "vdup.32 q8, d0[0]",
                "vdup.32 q9, d0[1]",
                "vdup.32 q10, d1[0]",
                "vdup.32 q11, d1[1]",
                "vdup.32 q12, d2[0]",
                "vdup.32 q13, d2[1]",
                "vdup.32 q14, d3[0]",
                "2:",
                "mov {m}, {m0}",
                "mov {n}, {steps}",
                "3:",
                "vld1.32 {{d0-d1}}, [{acc}]!",
                "vld1.32 {{d2-d3}}, [{m}]!",
                "vcvt.f32.s32 q0, q0",
                "vmul.f32 q0, q0, q1",
                "vmax.f32 q0, q0, q8",
                "vmin.f32 q0, q0, q9",
                "vceq.f32 q1, q0, q0",
                "vadd.f32 q0, q0, q10",
                "vsub.i32 q0, q0, q11",
                "vand q0, q0, q1",
                "vadd.i32 q0, q0, q12",
                "vmax.s32 q0, q0, q13",
                "vmin.s32 q0, q0, q14",
                "vmovn.i32 d0, q0",
                "vmovn.i16 d0, q0",
                "vst1.32 {{d0[0]}}, [{out}]!",
                "subs {n}, {n}, #1",
                "bne 3b",
                "subs {rows}, {rows}, #1",
                "bne 2b",
                "vpop {{d16-d31}}",
                c = in(reg) c as *const Consts,
                acc = inout(reg) acc => _,
                m0 = in(reg) m,
                m = out(reg) _,
                out = inout(reg) out => _,
                steps = in(reg) steps,
                n = out(reg) _,
                rows = inout(reg) rows => _,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Windows longer than [`MAX_STEPS`] (taken in several walks, each adding its sums), on
    /// dense shapes whose outputs end in blocks of 4 and single channels, with -128 weights
    /// in some blocks; the kernel property tests in `kernels` stay below it.
    #[test]
    fn deep_windows_equal_the_definition() {
        if !available() {
            return;
        }
        for (cin, out_c, kernel, pixels, seed) in [
            (120, 21, 3, 5, 1u64),
            (64, 16, 5, 3, 2),
            (1028, 12, 1, 2, 3),
        ] {
            let in_c = cin + 4;
            let row = (pixels + kernel) * in_c;
            let s = crate::signatures::DirectShape {
                in_c,
                out_c,
                cin,
                cout: out_c,
                kernel,
                stride: 1,
                row,
            };
            let mut x = seed;
            let mut next = move || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u32
            };
            let xp: Vec<u8> = (0..kernel * row).map(|_| next() as u8).collect();
            let w: Vec<i8> = (0..s.weights().unwrap())
                .map(|i| if i % 997 == 0 { i8::MIN } else { next() as i8 })
                .collect();
            let start: Vec<i32> = (0..pixels * out_c).map(|_| next() as i32 >> 8).collect();
            let mut want = start.clone();
            crate::generic::direct_u8(&s, &xp, pixels, &w, &mut want);
            let mut got = start;
            direct_u8_armv7(&s, &xp, pixels, &w, &mut got);
            assert_eq!(got, want, "cin {cin}, out_c {out_c}, kernel {kernel}");
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_seed::config(256))]

        /// The NEON requantization against the definition, byte for byte: accumulators over
        /// the whole i32 range, scales as a quantizer makes them and (rarely) NaN, infinities,
        /// zero and subnormals; zero points and bounds now and then far outside a byte; rows
        /// of any width (the vector loop and the scalar tail), several at a time.
        #[test]
        fn requantize_rows_equal_the_definition(
            width in 1usize..=41,
            rows in 0usize..=3,
            residual in any::<bool>(),
            with_inputs in any::<bool>(),
            seed in any::<u64>(),
        ) {
            if !available() {
                return Ok(()); // nothing to compare on this CPU
            }
            let mut next = crate::tests::xorshift(seed);
            let len = rows * width;
            let acc: Vec<i32> = (0..len)
                .map(|_| match next() % 8 {
                    0 => next() as i32,
                    _ => next() as i32 >> 12,
                })
                .collect();
            let multiplier: Vec<f32> = (0..width)
                .map(|_| match next() % 64 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => 0.0,
                    4 => 1e-40,
                    k => (k as f32 - 32.0) * 1e-5 * (1 + next() % 1000) as f32,
                })
                .collect();
            let wide = |v: u64| if seed % 8 == 0 { (v % (1 << 21)) as i32 - (1 << 20) } else { v as u8 as i32 };
            let (a, b) = (wide(next()), wide(next()));
            let (zero, lo, hi) = (wide(next()), a.min(b), a.max(b));
            let res_q = residual.then(|| (next() as u8 as i32, (next() % 1000) as f32 * 1e-3));
            let inputs: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let inputs = with_inputs.then_some(&inputs[..]);
            let want: Vec<u8> = (0..len)
                .map(|o| {
                    let r = res_q.zip(inputs).map(|((rz, rm), x)| (x[o], rz, rm));
                    crate::requant::requantize(acc[o], multiplier[o % width], r, (zero, lo, hi))
                })
                .collect();
            let mut got = vec![0xA5u8; len + 3];
            requantize_rows(&acc, &multiplier, (zero, lo, hi, res_q), inputs, &mut got[..len]);
            prop_assert_eq!(&got[..len], &want[..]);
            prop_assert_eq!(&got[len..], &[0xA5u8; 3][..]);
        }
    }
}

//! aarch64 twins of the u8-quad dot kernels on the dot-product instructions (`sdot`, Armv8.2
//! `dotprod`: Cortex-A76/A78/A55, the Raspberry Pi 5, Jetson Orin), detected at run time.
//!
//! One `sdot` multiplies four i8 pairs per i32 lane and adds them: 16 multiply-accumulates per
//! instruction, four times the `smull` path of [`super::aarch64`]. The u8 inputs become
//! `x - 128` (one `eor` per 16 bytes) and `128 * sum w` is added back, as there. A tile is 4
//! rows x 16 outputs: per 4 quads, one 16-byte load and `eor` per row, 4 weight vectors per quad
//! shared by the rows, and the indexed form `sdot v.4s, w.16b, x.4b[j]` takes quad `j` of the
//! row's register, so no quad is broadcast. 16 accumulators, 4 row registers, 4 weight ones.
//!
//! The `sdot` intrinsics are not stable Rust yet, so the instruction is written as inline
//! assembly (one instruction, registers chosen by the compiler), inside functions compiled
//! with the `dotprod` feature.

use super::aarch64::bias_back;
use super::neon_sink::{AccSink, RequantSink, Sink, SinkExt};
use super::requant::Requantize;
use std::arch::aarch64::*;
use std::arch::asm;

/// Whether this CPU has the dot-product instructions.
pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `sdot` twin of [`super::generic::dot_u8i8`].
pub fn dot_u8i8_sdot(rows: usize, patch: &[u8], kq: usize, w: &[i8], n: usize, acc: &mut [i32]) {
    assert!(kq.is_multiple_of(4));
    assert!(super::fits(rows, kq, n, patch.len(), w.len(), acc.len()));
    if !available() {
        return super::generic::dot_u8i8(rows, patch, kq, w, n, acc);
    }
    let sink = AccSink {
        acc: acc.as_mut_ptr(),
        out_c: n,
    };
    for (o0, width) in super::panels(n) {
        // SAFETY: the CPU has `dotprod` (checked above); the slices hold rows * kq patch
        // values, kq * n weights and rows * n accumulators (asserted above): the panel's
        // kq * width weights from o0 * kq and its outputs o0..o0 + width of each row.
        unsafe {
            let w = w.as_ptr().add(o0 * kq);
            panel(rows, patch.as_ptr(), kq, w, width, (&sink, o0))
        }
    }
}

/// `sdot` twin of [`super::generic::dot_u8i8_requant`].
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_sdot(
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
    if !available() {
        return super::generic::dot_u8i8_requant(rows, patch, kq, w, n, rq, residual, out, ldo);
    }
    let sink = RequantSink::new(rq, residual, out, ldo);
    for (o0, width) in super::panels(n) {
        // SAFETY: the CPU has `dotprod`; `fits_requant` holds: rows * kq patch values, kq * n
        // weights (the panel's from o0 * kq), n channels of requantization, and rows of n
        // outputs (and residual inputs, if any) ldo apart.
        unsafe {
            let w = w.as_ptr().add(o0 * kq);
            panel(rows, patch.as_ptr(), kq, w, width, (&sink, o0))
        }
    }
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
/// # Safety
/// The CPU must have `dotprod`; `patch` must hold `rows * kq` values, `w` `kq * n`, and the
/// sink rows of outputs `o0..o0 + n`.
#[target_feature(enable = "dotprod")]
unsafe fn panel(
    rows: usize,
    patch: *const u8,
    kq: usize,
    w: *const i8,
    n: usize,
    (sink, o0): (&impl Sink, usize),
) {
    let quads = kq / 4;
    // SAFETY (every intrinsic and pointer below): NEON is baseline, `dotprod` the caller's
    // guarantee; each access stays inside the bounds stated above, as the loop conditions
    // ensure.
    unsafe {
        let mut o = 0;
        while o + 16 <= n {
            let back = std::array::from_fn(|v| bias_back(w, n, o + 4 * v, quads).0);
            rows_of::<4>((rows, patch, kq), (w, n, o), back, (sink, o0 + o));
            o += 16;
        }
        if o + 8 <= n {
            let back = std::array::from_fn(|v| bias_back(w, n, o + 4 * v, quads).0);
            rows_of::<2>((rows, patch, kq), (w, n, o), back, (sink, o0 + o));
            o += 8;
        }
        if o + 4 <= n {
            let back = [bias_back(w, n, o, quads).0];
            rows_of::<1>((rows, patch, kq), (w, n, o), back, (sink, o0 + o));
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

/// Every row of outputs `o..o + 4 V` into `sink`, in tiles of 4 rows.
///
/// # Safety
/// As for [`panel`], with outputs `o..o + 4 V` inside the panel.
#[inline(always)]
unsafe fn rows_of<const V: usize>(
    (rows, patch, kq): (usize, *const u8, usize),
    (w, n, o): (*const i8, usize, usize),
    back: [int32x4_t; V],
    (sink, o_sink): (&impl Sink, usize),
) {
    let t = Tile { patch, kq, w, n, o };
    // SAFETY: the caller's preconditions; tiles stay inside `rows`.
    unsafe {
        let mut r0 = 0;
        while r0 + 4 <= rows {
            sink.put_all(r0, o_sink, t.sums::<4, V>(r0), back);
            r0 += 4;
        }
        match rows - r0 {
            3 => sink.put_all(r0, o_sink, t.sums::<3, V>(r0), back),
            2 => sink.put_all(r0, o_sink, t.sums::<2, V>(r0), back),
            1 => sink.put_all(r0, o_sink, t.sums::<1, V>(r0), back),
            _ => {}
        }
    }
}

/// The operands of a tile: outputs `o..` of a panel of `n`.
struct Tile {
    patch: *const u8,
    kq: usize,
    w: *const i8,
    n: usize,
    o: usize,
}

impl Tile {
    /// Weights of quad `q`, outputs `o + 4 v..o + 4 v + 4`.
    ///
    /// # Safety
    /// The quad and outputs must be inside the panel.
    #[inline(always)]
    unsafe fn w<const V: usize>(&self, q: usize) -> [int8x16_t; V] {
        // SAFETY: the caller's preconditions; NEON is baseline.
        std::array::from_fn(|v| unsafe { vld1q_s8(self.w.add((q * self.n + self.o + 4 * v) * 4)) })
    }

    /// The sums `sum x * w - 128 * sum w` of rows `r0..r0 + R` (1..=4), outputs
    /// `o..o + 4 V`: 4 quads per step, then the last 0..=3 one by one.
    ///
    /// # Safety
    /// The CPU must have `dotprod` and the caller be compiled with it; rows `r0..r0 + R` and
    /// the tile's outputs must be inside the buffers.
    #[inline(always)]
    unsafe fn sums<const R: usize, const V: usize>(&self, r0: usize) -> [[int32x4_t; V]; R] {
        let quads = self.kq / 4;
        let flip = vdupq_n_u8(0x80);
        // SAFETY: the caller's preconditions; loads stay inside rows r0..r0 + R and `quads`.
        unsafe {
            let row = |r: usize, q: usize| self.patch.add((r0 + r) * self.kq + 4 * q);
            let mut a = [[vdupq_n_s32(0); V]; R];
            let mut q = 0;
            while q + 4 <= quads {
                let x: [int8x16_t; R] = std::array::from_fn(|r| {
                    vreinterpretq_s8_u8(veorq_u8(vld1q_u8(row(r, q)), flip))
                });
                let w0 = self.w::<V>(q);
                for (ar, &xr) in a.iter_mut().zip(&x) {
                    for (av, &wv) in ar.iter_mut().zip(&w0) {
                        *av = sdot::<0>(*av, wv, xr);
                    }
                }
                let w1 = self.w::<V>(q + 1);
                for (ar, &xr) in a.iter_mut().zip(&x) {
                    for (av, &wv) in ar.iter_mut().zip(&w1) {
                        *av = sdot::<1>(*av, wv, xr);
                    }
                }
                let w2 = self.w::<V>(q + 2);
                for (ar, &xr) in a.iter_mut().zip(&x) {
                    for (av, &wv) in ar.iter_mut().zip(&w2) {
                        *av = sdot::<2>(*av, wv, xr);
                    }
                }
                let w3 = self.w::<V>(q + 3);
                for (ar, &xr) in a.iter_mut().zip(&x) {
                    for (av, &wv) in ar.iter_mut().zip(&w3) {
                        *av = sdot::<3>(*av, wv, xr);
                    }
                }
                q += 4;
            }
            while q < quads {
                let wq = self.w::<V>(q);
                for (r, ar) in a.iter_mut().enumerate() {
                    let word = (row(r, q) as *const u32).read_unaligned();
                    let xr = vreinterpretq_s8_u8(veorq_u8(
                        vreinterpretq_u8_u32(vdupq_n_u32(word)),
                        flip,
                    ));
                    for (av, &wv) in ar.iter_mut().zip(&wq) {
                        *av = sdot::<0>(*av, wv, xr);
                    }
                }
                q += 1;
            }
            a
        }
    }
}

//! Intel AMX (Advanced Matrix Extensions) twin of the requantizing dot kernel: the pointwise
//! convolutions on the tile unit, where one `tdpbusd` multiplies a 16 x 64 block of u8 inputs
//! by a 64 x 16 block of i8 weights into 16 x 16 i32 sums (16384 multiply-adds; a 512-bit
//! `vpdpbusd` does 64).
//!
//! The AMX intrinsics are not stable Rust, so the tile loop is one block of inline assembly.
//! Blocks of 32 pixels x 32 outputs (a weight panel, [`crate::signatures::PANEL`]): four accumulator tiles,
//! per 16 quads of depth two input tiles (the pixels' rows, `depth_bytes` bytes apart, read in place) and
//! two weight tiles (the panel's `[quad][32][4]` rows are 128 bytes: a tile of 16 outputs is 64
//! bytes of each, `tileloadd` with a 128-byte stride), four `tdpbusd`. The sums go to a stack
//! buffer and are requantized there with the AVX-512 VNNI kernel's code; the rows past the last
//! 16 take tiles configured that short. Depths that are not a multiple of 64 bytes and widths
//! that are not whole panels run on the AVX-512 VNNI kernel.
//!
//! Linux hands out the tile registers on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, once per
//! process, in [`available`]); each call loads the tile configuration in its own thread and
//! releases the tiles at the end.

use super::requant::TileRequant;
use super::x86_64::{dot_u8i8_requant_vnni, has_vnni_512, Avx512Requant};
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether the CPU has AMX-INT8 and the kernel lets this process use the tile registers
/// (asked for here, once), with AVX-512 VNNI for the rest of the kernel.
pub fn available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| {
        // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        let edx = __cpuid_count(7, 0).edx;
        let cpu = edx & (1 << 24) != 0 && edx & (1 << 25) != 0;
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with this request only changes the process's permissions.
        cpu && has_vnni_512()
            && unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            } == 0
    })
}

/// The tile configuration (palette 1): tiles 0-7 each 16 rows of 64 bytes.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// AMX twin of [`super::generic::dot_u8i8_requant`] (see the module): the AVX-512 VNNI kernel
/// where AMX does not apply.
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_amx(
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
    if !available()
        || depth_bytes == 0
        || !depth_bytes.is_multiple_of(64)
        || !n.is_multiple_of(crate::signatures::PANEL)
    {
        return dot_u8i8_requant_vnni(rows, patch, depth_bytes, w, n, rq, residual, out, ldo);
    }
    // SAFETY: AMX and AVX-512 are available (checked above); `fits_requant` holds for `rows`
    // (asserted above); depth_bytes is a non-zero multiple of 64 (the tile loop runs at least once) and
    // n a multiple of 32.
    unsafe { amx_rows(rows, (patch, depth_bytes), w, n, rq, residual, (out, ldo)) };
}

/// Rows `0..rows` of [`dot_u8i8_requant_amx`], panel by panel, in blocks of 32 rows (the last
/// one 16 if need be), then the last `rows % 16` rows of every panel with the input and sum
/// tiles configured that short (on the AVX-512 kernel they would stream every panel's weights
/// once more: at two threads a 49-pixel layer's ranges are 16 + 9 rows).
///
/// # Safety
/// AMX-INT8 (permission granted) and AVX-512 F/BW/VL/VNNI must be available; the buffers as
/// `fits_requant` checks them for `rows` rows; `depth_bytes` a non-zero multiple of 64, `n` a multiple
/// of 32.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni,avx512vl")]
unsafe fn amx_rows(
    rows: usize,
    (patch, depth_bytes): (&[u8], usize),
    w: &[i8],
    n: usize,
    rq: &TileRequant,
    residual: Option<&[u8]>,
    (out, ldo): (&mut [u8], usize),
) {
    // SAFETY: AVX-512 F is available (this function's precondition).
    let requant = unsafe {
        Avx512Requant::new(
            (rq.zero, rq.lo, rq.hi),
            rq.residual.filter(|_| residual.is_some()),
        )
    };
    // The sums of one block: 32 rows of 32 outputs.
    let mut sums = [0i32; 32 * 32];
    // Requantizes `block` rows of `sums` into rows r0.. and outputs o..o + 32.
    let mut put = |sums: &[i32; 1024], r0: usize, block: usize, o: usize| {
        for r in 0..block {
            let at = (r0 + r) * ldo + o;
            for h in 0..2 {
                // SAFETY: AVX-512 is enabled here; lanes 16 h.. of the block's row r; outputs
                // o + 16 h.. of the biases and multipliers (o + 32 <= n); bytes at..at + 32 of
                // the output and residual rows (fits_requant, r0 + r < rows).
                unsafe {
                    let acc = _mm512_loadu_si512(sums.as_ptr().add(r * 32 + 16 * h).cast());
                    let bias = _mm512_loadu_si512(rq.bias.as_ptr().add(o + 16 * h).cast());
                    let m = _mm512_loadu_ps(rq.multiplier.as_ptr().add(o + 16 * h));
                    let res =
                        residual.map(|res| _mm_loadu_si128(res.as_ptr().add(at + 16 * h).cast()));
                    let y = requant.apply(_mm512_add_epi32(acc, bias), m, res);
                    _mm_storeu_si128(out.as_mut_ptr().add(at + 16 * h).cast(), y);
                }
            }
        }
    };
    let (full, tail) = (rows / 16 * 16, rows % 16);
    // SAFETY: AMX is available (the caller); the configuration is 64 readable bytes.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
    for o in (0..n).step_by(32) {
        let panel = w[o * depth_bytes..(o + 32) * depth_bytes].as_ptr();
        let mut r0 = 0;
        while r0 < full {
            let block = if r0 + 32 <= full { 32 } else { 16 };
            let x = patch[r0 * depth_bytes..(r0 + block) * depth_bytes].as_ptr();
            // SAFETY: `block` rows of depth_bytes bytes from `x`, the panel's depth_bytes * 32 weights, and the
            // 4 KB of `sums`; depth_bytes / 64 steps of 16 quads; tiles configured above.
            unsafe { block_sums(x, depth_bytes, panel, block == 32, &mut sums) };
            put(&sums, r0, block, o);
            r0 += block;
        }
    }
    if tail > 0 {
        let mut short = CONFIG;
        for t in [0, 1, 4] {
            short.rows[t] = tail as u8;
        }
        // SAFETY: AMX is available; the configuration is 64 readable bytes.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &short, options(nostack, readonly)) };
        for o in (0..n).step_by(32) {
            let panel = w[o * depth_bytes..(o + 32) * depth_bytes].as_ptr();
            let x = patch[full * depth_bytes..rows * depth_bytes].as_ptr();
            // SAFETY: the input tile is configured `tail` rows of 64 bytes: `tail` rows of depth_bytes
            // bytes from `x`; the weights and `sums` as above (`tail` rows stored).
            unsafe { block_sums(x, depth_bytes, panel, false, &mut sums) };
            put(&sums, full, tail, o);
        }
    }
    // SAFETY: AMX is available; releasing the tiles has no operands.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// The sums of one block into `sums` (rows 128 bytes apart): 32 rows (`two`) or 16, from `x`
/// (rows `depth_bytes` bytes apart), times the 32-output panel `w` (`[depth_bytes / 4][32][4]`).
///
/// Tiles: 0-3 sums (rows 0-15 / 16-31 x outputs 0-15 / 16-31), 4-5 inputs, 6-7 weights.
///
/// # Safety
/// The tiles configured in this thread as [`CONFIG`], or with the input and sum tiles shorter
/// (then as many rows are read and stored); `x` readable for the rows' depth_bytes bytes each,
/// `w` for `depth_bytes * 32` bytes; `depth_bytes` a non-zero multiple of 64.
#[inline(always)]
unsafe fn block_sums(
    x: *const u8,
    depth_bytes: usize,
    w: *const i8,
    two: bool,
    sums: &mut [i32; 1024],
) {
    let steps = depth_bytes / 64;
    let c = sums.as_mut_ptr();
    // SAFETY: the caller's preconditions: each step reads 16 rows x 64 bytes of input from `x`
    // (+ 16 rows further when `two`), 16 rows x 128 bytes of weights; the stores write 32 (or 16)
    // rows of 128 bytes into `sums`. The tile registers are not the compiler's.
    unsafe {
        if two {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{x} + {depth_bytes}*1]",
                "tileloadd tmm5, [{x2} + {depth_bytes}*1]",
                "tileloadd tmm6, [{w} + {ws}*1]",
                "tileloadd tmm7, [{w} + {ws}*1 + 64]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                "add {x}, 64",
                "add {x2}, 64",
                "add {w}, 2048",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c} + {ws}*1], tmm0",
                "tilestored [{c} + {ws}*1 + 64], tmm1",
                "tilestored [{c} + {ws}*1 + 2048], tmm2",
                "tilestored [{c} + {ws}*1 + 2112], tmm3",
                x = inout(reg) x => _,
                x2 = inout(reg) x.add(16 * depth_bytes) => _,
                w = inout(reg) w => _,
                depth_bytes = in(reg) depth_bytes,
                ws = in(reg) 128usize,
                steps = inout(reg) steps => _,
                c = in(reg) c,
                options(nostack),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "2:",
                "tileloadd tmm4, [{x} + {depth_bytes}*1]",
                "tileloadd tmm6, [{w} + {ws}*1]",
                "tileloadd tmm7, [{w} + {ws}*1 + 64]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "add {x}, 64",
                "add {w}, 2048",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c} + {ws}*1], tmm0",
                "tilestored [{c} + {ws}*1 + 64], tmm1",
                x = inout(reg) x => _,
                w = inout(reg) w => _,
                depth_bytes = in(reg) depth_bytes,
                ws = in(reg) 128usize,
                steps = inout(reg) steps => _,
                c = in(reg) c,
                options(nostack),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_seed::config(48))]

        /// The AMX kernel against the definition on the shapes it takes (depths of whole 64
        /// bytes; any row count: blocks of 32 and 16 rows and the short tiles of the last
        /// rows), with gaps between output rows, a residual now and then, and residual inputs
        /// that disagree with the requantization's now and then.
        #[test]
        fn amx_equals_the_definition(
            rows in 1usize..=83,
            steps in 1usize..=5,
            panels in 1usize..=3,
            gap in 0usize..=3,
            residual in any::<bool>(),
            seed in any::<u64>(),
        ) {
            if !available() {
                return Ok(()); // nothing to compare on this CPU
            }
            let (depth_bytes, n) = (64 * steps, 32 * panels);
            let ldo = n + gap;
            let mut next = crate::tests::xorshift(seed);
            let patch: Vec<u8> = (0..rows * depth_bytes).map(|_| next() as u8).collect();
            let w: Vec<i8> = (0..depth_bytes * n).map(|_| next() as i8).collect();
            let bias: Vec<i32> = (0..n).map(|_| next() as i32 >> 12).collect();
            let multiplier: Vec<f32> = (0..n)
                .map(|_| match next() % 64 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => 0.0,
                    4 => 1e-40,
                    k => (k as f32 - 32.0) * 1e-5 * (1 + next() % 1000) as f32,
                })
                .collect();
            let (a, b) = (next() as u8 as i32, next() as u8 as i32);
            let rq_residual =
                residual.then(|| (next() as u8 as i32, (next() % 1000) as f32 * 1e-3));
            let rq = TileRequant {
                bias: &bias,
                multiplier: &multiplier,
                zero: next() as u8 as i32,
                lo: a.min(b),
                hi: a.max(b),
                residual: rq_residual,
                weight_sums: None,
                nan_free: TileRequant::nan_free_multipliers(&multiplier, rq_residual),
            };
            let len = (rows - 1) * ldo + n;
            let res: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Now and then the call's residual inputs and the requantization's residual
            // disagree (the definition adds the term only when both are there).
            let res = (residual != (seed % 16 == 5)).then_some(&res[..]);
            let mut want = vec![0xC3u8; len + 3];
            crate::generic::dot_u8i8_requant(rows, &patch, depth_bytes, &w, n, &rq, res, &mut want[..len], ldo);
            let mut got = vec![0xC3u8; len + 3];
            dot_u8i8_requant_amx(rows, &patch, depth_bytes, &w, n, &rq, res, &mut got[..len], ldo);
            prop_assert_eq!(got, want);
        }
    }
}

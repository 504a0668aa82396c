//! x86_64 VNNI twins of the generic u8-quad kernels (`vpdpbusd`, on 256-bit vectors with
//! AVX-VNNI or AVX-512 VL, on 512-bit ones with AVX-512), and the depth-block and panel loop
//! of the dot kernels that [`super::avx2`] shares.

use std::arch::x86_64::*;

/// AVX-VNNI, or AVX-512 VNNI with 256-bit vectors.
pub fn has_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avxvnni")
        || (std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl"))
}

/// VNNI twin of [`super::generic::dot_u8i8`] on 256-bit vectors (AVX-VNNI's `vpdpbusd`, or
/// AVX-512 VNNI's VL form); falls back to the generic kernel without either.
///
/// Tile: 4 rows x 8 outputs in 4 ymm accumulators; per input quad one weight load (8 outputs
/// x 4 i8) shared by the rows, one broadcast and one `vpdpbusd` (32 multiply-adds) per row.
/// The depth runs in blocks of `KC` quads; outputs beyond the last multiple of 8 run one by one.
pub fn dot_u8i8_vnni256(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
) {
    crate::signatures::check_dot_u8i8(rows, (patch, depth_bytes), w, n, acc);
    let avx = std::arch::is_x86_feature_detected!("avxvnni");
    if !avx && !has_vnni() {
        return super::generic::dot_u8i8(rows, patch, depth_bytes, w, n, acc);
    }
    // SAFETY: the body: the feature is present (checked above) and `dot_u8_blocks` hands
    // in arguments in bounds with q0 <= q1 <= depth_bytes / 4.
    dot_u8_blocks(rows, patch, depth_bytes, w, n, acc, &|args| unsafe {
        if avx {
            dot_vnni_avx(args, 0)
        } else {
            dot_vnni_512(args, 0)
        }
    })
}

/// AVX-512 VNNI twin of [`super::generic::dot_u8i8`] on 512-bit tiles ([`dot_vnni_zmm`]);
/// [`dot_u8i8_vnni256`] without full AVX-512.
pub fn dot_u8i8_vnni512(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
) {
    crate::signatures::check_dot_u8i8(rows, (patch, depth_bytes), w, n, acc);
    if !has_vnni_512() {
        return dot_u8i8_vnni256(rows, patch, depth_bytes, w, n, acc);
    }
    // SAFETY: the body: AVX-512 VNNI, VL and BW are present (checked above) and
    // `dot_u8_blocks` hands in arguments in bounds with q0 <= q1 <= depth_bytes / 4.
    dot_u8_blocks(rows, patch, depth_bytes, w, n, acc, &|args| unsafe {
        dot_vnni_zmm(args)
    })
}

/// The loop of the dot kernels around their tiles: the depth in blocks, and each block's
/// [`crate::signatures::PANEL`]s of outputs, one `body` call per block and panel with its operands.
/// `fits` must hold for the arguments (the callers assert it).
pub(super) fn dot_u8_blocks(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
    body: &dyn Fn(Vnni),
) {
    debug_assert!(crate::signatures::fits(
        rows,
        depth_bytes,
        n,
        patch.len(),
        w.len(),
        acc.len()
    ));
    // 64 quads: the 32 rows' patch slices (8 KB) and one 32-output slice of the weights (8 KB)
    // of a block stay in L1 while the tiles pass over them (256 quads ran 15 % slower).
    const KC: usize = 64;
    let quads = depth_bytes / 4;
    // Depth blocks outside, panels inside: a block's patch rows stay in L1 for every panel.
    // (Panels outside measured the same on resnext50.)
    let mut q0 = 0;
    while q0 < quads {
        let q1 = (q0 + KC).min(quads);
        for (o0, width) in crate::signatures::panels(n) {
            // The panel's depth_bytes * width weights from o0 * depth_bytes, and its outputs o0..o0 + width of
            // each row, n apart.
            body(Vnni {
                rows,
                patch: patch.as_ptr(),
                depth_bytes,
                w: w[o0 * depth_bytes..].as_ptr(),
                n: width,
                acc: acc[o0..].as_mut_ptr(),
                ldc: n,
                q0,
                q1,
            });
        }
        q0 = q1;
    }
}

/// One panel's share of a dot kernel call: `rows` patch rows of `depth_bytes` bytes, the
/// panel's weights `[depth_bytes / 4][n][4]`, its accumulators (rows `ldc` apart), quads `q0..q1`.
#[derive(Clone, Copy)]
pub(super) struct Vnni {
    rows: usize,
    patch: *const u8,
    depth_bytes: usize,
    w: *const i8,
    n: usize,
    acc: *mut i32,
    ldc: usize,
    q0: usize,
    q1: usize,
}

/// AVX-512 VNNI on full 512-bit vectors.
pub fn has_vnni_512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

/// # Safety
/// AVX-VNNI must be available; the rest as for [`dot_vnni_body`].
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn dot_vnni_avx(a: Vnni, o_begin: usize) {
    // SAFETY: forwarded preconditions; the closure runs inside this feature-enabled function.
    unsafe { dot_vnni_body(a, o_begin, |acc, x, w| _mm256_dpbusd_avx_epi32(acc, x, w)) }
}

/// # Safety
/// AVX-512 VNNI and VL must be available; the rest as for [`dot_vnni_body`].
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn dot_vnni_512(a: Vnni, o_begin: usize) {
    // SAFETY: forwarded preconditions; the closure runs inside this feature-enabled function.
    unsafe { dot_vnni_body(a, o_begin, |acc, x, w| _mm256_dpbusd_epi32(acc, x, w)) }
}

/// 512-bit tiles: 8 rows x 32 outputs in 16 zmm accumulators (two `vpdpbusd` of 64
/// multiply-adds per row and quad, one 64-byte weight load per 16 outputs shared by the rows),
/// then 4, 2 and 1 rows; outputs beyond the last multiple of 32 go to the 256-bit body.
///
/// # Safety
/// AVX-512 VNNI, VL and BW must be available; the rest as for [`dot_vnni_body`].
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni,avx512vl")]
unsafe fn dot_vnni_zmm(args: Vnni) {
    let Vnni { rows, n, .. } = args;
    let mut o = 0;
    // SAFETY: the features are enabled here; o + 32 <= n and every tile's rows r0..r0 + R are
    // below `rows`, as `zmm_tile` requires.
    unsafe {
        while o + 32 <= n {
            let mut r0 = 0;
            while r0 + 8 <= rows {
                zmm_tile::<8>(args, r0, o);
                r0 += 8;
            }
            if r0 + 4 <= rows {
                zmm_tile::<4>(args, r0, o);
                r0 += 4;
            }
            if r0 + 2 <= rows {
                zmm_tile::<2>(args, r0, o);
                r0 += 2;
            }
            if r0 < rows {
                zmm_tile::<1>(args, r0, o);
            }
            o += 32;
        }
        dot_vnni_body(args, o, |acc, x, w| _mm256_dpbusd_epi32(acc, x, w))
    }
}

/// Rows `r0..r0 + R` x outputs `o..o + 32` of [`dot_vnni_zmm`].
///
/// # Safety
/// As for [`dot_vnni_zmm`], and `r0 + R <= rows`, `o + 32 <= n`.
#[inline(always)]
unsafe fn zmm_tile<const R: usize>(
    Vnni {
        patch,
        depth_bytes,
        w,
        n,
        acc,
        ldc,
        q0,
        q1,
        ..
    }: Vnni,
    r0: usize,
    o: usize,
) {
    // SAFETY: every intrinsic and pointer below: the caller enables the features; rows
    // r0..r0 + R and quads q0..q1 are inside `patch` (rows * depth_bytes bytes), outputs o..o + 32 of
    // quad q inside `w` ((q * n + o) * 4 + 128 <= depth_bytes * n), and of each row inside `acc` (rows
    // `ldc` apart).
    unsafe {
        let z = _mm512_setzero_si512();
        let mut a = [[z; 2]; R];
        for q in q0..q1 {
            let wa = _mm512_loadu_si512(w.add((q * n + o) * 4) as *const __m512i);
            let wb = _mm512_loadu_si512(w.add((q * n + o + 16) * 4) as *const __m512i);
            for (r, ar) in a.iter_mut().enumerate() {
                let v = (patch.add((r0 + r) * depth_bytes + 4 * q) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(v);
                ar[0] = _mm512_dpbusd_epi32(ar[0], x, wa);
                ar[1] = _mm512_dpbusd_epi32(ar[1], x, wb);
            }
        }
        for (r, ar) in a.into_iter().enumerate() {
            for (h, v) in ar.into_iter().enumerate() {
                let p = acc.add((r0 + r) * ldc + o + 16 * h) as *mut __m512i;
                _mm512_storeu_si512(
                    p,
                    _mm512_add_epi32(_mm512_loadu_si512(p as *const __m512i), v),
                );
            }
        }
    }
}

/// AVX-512 VNNI twin of [`super::generic::dot_u8i8_requant`] for `n` a multiple of
/// [`crate::signatures::PANEL`]; the generic kernel otherwise, or without AVX-512 VNNI.
///
/// Tiles of 8 rows x 32 outputs as in [`dot_u8i8_vnni512`] (then 4, 2, 1 rows), each over the
/// whole depth, so that its accumulators stay in registers until the requantization runs on
/// them in place: bias, multiplier, residual, rounding and clamp on 16 lanes, 16 bytes stored
/// per row and vector. What this saves against the dot kernel and a requantization pass: the
/// accumulators' bias copy, store and reload.
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_vnni(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    rq: &super::requant::TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
    ldo: usize,
) {
    let patch_kq = (patch, depth_bytes);
    assert!(crate::signatures::fits_requant(
        rows, patch_kq, w, n, rq, residual, out, ldo
    ));
    if !has_vnni_512() || !n.is_multiple_of(crate::signatures::PANEL) {
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
    let f = Fused::new((patch, depth_bytes), w, rq, residual, out, ldo);
    // SAFETY: AVX-512 VNNI/BW/VL are present (checked above); `fits_requant` holds (asserted
    // above): rows * depth_bytes patch bytes, depth_bytes * n weights in panels of 32, n biases and multipliers,
    // and rows of n outputs (and residual inputs) ldo apart.
    unsafe { fused_panels(&f, rows, n) }
}

/// The operands of [`dot_u8i8_requant_vnni`] (and of its AVX2 twin) as pointers.
pub(super) struct Fused {
    pub patch: *const u8,
    pub depth_bytes: usize,
    pub w: *const i8,
    pub bias: *const i32,
    pub multiplier: *const f32,
    /// Output zero point, clamp bounds.
    pub bounds: (i32, i32, i32),
    /// The residual's zero point and multiplier, and its rows (`ldo` apart, as `out`).
    pub residual: Option<((i32, f32), *const u8)>,
    pub out: *mut u8,
    pub ldo: usize,
}

impl Fused {
    /// The operands of a [`crate::signatures::DotU8Requant`] call.
    pub fn new(
        (patch, depth_bytes): (&[u8], usize),
        w: &[i8],
        rq: &super::requant::TileRequant,
        residual: Option<&[u8]>,
        out: &mut [u8],
        ldo: usize,
    ) -> Fused {
        Fused {
            patch: patch.as_ptr(),
            depth_bytes,
            w: w.as_ptr(),
            bias: rq.bias.as_ptr(),
            multiplier: rq.multiplier.as_ptr(),
            bounds: (rq.zero, rq.lo, rq.hi),
            residual: rq.residual.zip(residual.map(<[u8]>::as_ptr)),
            out: out.as_mut_ptr(),
            ldo,
        }
    }
}

/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; the operands of `f` as [`dot_u8i8_requant_vnni`]
/// checks them, for `rows` rows and `n` (a multiple of 32) outputs.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni,avx512vl")]
unsafe fn fused_panels(f: &Fused, rows: usize, n: usize) {
    // SAFETY: the features are enabled here; every tile's rows r0..r0 + R are below `rows` and
    // its outputs o..o + 32 below `n`, as `fused_tile` requires.
    unsafe {
        // Rows in as few tiles as 8-row tiles would take, of even sizes (49 rows: 7 x 7, not
        // 6 x 8 + 1): a short tile costs as many weight loads as a full one.
        let tiles = rows.div_ceil(8);
        for o in (0..n).step_by(32) {
            let mut r0 = 0;
            for t in 0..tiles {
                let r = rows / tiles + usize::from(t < rows % tiles);
                // The first tile of a panel fetches the next panel's weights ahead (they come
                // from L3 or memory once per inference: the model's 25 MB do not stay in L2).
                let next = if t == 0 && o + 32 < n {
                    f.w.add((o + 32) * f.depth_bytes)
                } else {
                    std::ptr::null()
                };
                match r {
                    8 => fused_tile::<8>(f, r0, o, next),
                    7 => fused_tile::<7>(f, r0, o, next),
                    6 => fused_tile::<6>(f, r0, o, next),
                    5 => fused_tile::<5>(f, r0, o, next),
                    4 => fused_tile::<4>(f, r0, o, next),
                    3 => fused_tile::<3>(f, r0, o, next),
                    2 => fused_tile::<2>(f, r0, o, next),
                    _ => fused_tile::<1>(f, r0, o, next),
                }
                r0 += r;
            }
        }
    }
}

/// Rows `r0..r0 + R` x outputs `o..o + 32` of [`fused_panels`]: the products over the whole
/// depth, then the requantization of [`super::requant::requantize`] lane by lane in the same
/// f32 operations (`vcvtdq2ps` rounds to nearest as `as f32` does; NaN masked to 0 before the
/// clamp, which would turn it into a bound).
///
/// # Safety
/// As for [`fused_panels`], and `r0 + R <= rows`, `o + 32 <= n`.
#[inline(always)]
unsafe fn fused_tile<const R: usize>(f: &Fused, r0: usize, o: usize, next: *const i8) {
    // SAFETY: every intrinsic and pointer below: the caller enables the features; rows
    // r0..r0 + R of the patch (depth_bytes bytes each), the 32-output panel at o * depth_bytes of the weights
    // ((q + 1) * 128 <= depth_bytes * 32 for q < depth_bytes / 4), outputs o..o + 32 of the biases and
    // multipliers, and bytes o..o + 32 of output and residual rows r0..r0 + R are in bounds.
    unsafe {
        let w = f.w.add(o * f.depth_bytes);
        let z = _mm512_setzero_si512();
        let mut a = [[z; 2]; R];
        for q in 0..f.depth_bytes / 4 {
            let wa = _mm512_loadu_si512(w.add(q * 128) as *const __m512i);
            let wb = _mm512_loadu_si512(w.add(q * 128 + 64) as *const __m512i);
            if !next.is_null() {
                // The next panel's weights, a quad's lines at a time, into L2.
                _mm_prefetch::<_MM_HINT_T1>(next.add(q * 128));
                _mm_prefetch::<_MM_HINT_T1>(next.add(q * 128 + 64));
            }
            for (r, ar) in a.iter_mut().enumerate() {
                let v =
                    (f.patch.add((r0 + r) * f.depth_bytes + 4 * q) as *const i32).read_unaligned();
                let x = _mm512_set1_epi32(v);
                ar[0] = _mm512_dpbusd_epi32(ar[0], x, wa);
                ar[1] = _mm512_dpbusd_epi32(ar[1], x, wb);
            }
        }
        let rq = Avx512Requant::new(f.bounds, f.residual.map(|(r, _)| r));
        let bias = [0, 16].map(|h| _mm512_loadu_si512(f.bias.add(o + h) as *const __m512i));
        let mult = [0, 16].map(|h| _mm512_loadu_ps(f.multiplier.add(o + h)));
        for (r, ar) in a.into_iter().enumerate() {
            for (h, acc) in ar.into_iter().enumerate() {
                let at = (r0 + r) * f.ldo + o + 16 * h;
                let res = f
                    .residual
                    .map(|(_, res)| _mm_loadu_si128(res.add(at).cast()));
                let y = rq.apply(_mm512_add_epi32(acc, bias[h]), mult[h], res);
                _mm_storeu_si128(f.out.add(at).cast(), y);
            }
        }
    }
}

/// The constants of [`super::requant::requantize`] on 16 lanes.
#[derive(Clone, Copy)]
pub(super) struct Avx512Requant {
    zero: __m512i,
    lo: __m512i,
    hi: __m512i,
    /// The residual's zero point and multiplier.
    residual: Option<(__m512i, __m512)>,
}

impl Avx512Requant {
    /// # Safety
    /// AVX-512 F must be available.
    #[inline(always)]
    pub(super) unsafe fn new(
        (zero, lo, hi): (i32, i32, i32),
        residual: Option<(i32, f32)>,
    ) -> Self {
        // SAFETY: the caller's preconditions.
        unsafe {
            Avx512Requant {
                zero: _mm512_set1_epi32(zero),
                lo: _mm512_set1_epi32(lo),
                hi: _mm512_set1_epi32(hi),
                residual: residual.map(|(z, m)| (_mm512_set1_epi32(z), _mm512_set1_ps(m))),
            }
        }
    }

    /// The 16 outputs of accumulators `sum` (bias included), multipliers `m`, and the 16
    /// residual inputs `res` (used only when there is a residual): the f32 operations of
    /// [`super::requant::requantize`] in the same order (`vcvtdq2ps` rounds to nearest as
    /// `as f32` does; after the clamp to +-2^22, rounding to nearest even in `vcvtps2dq` is
    /// what the magic-number addition does; NaN masked to 0 before the clamp, which would
    /// make it a bound).
    ///
    /// # Safety
    /// AVX-512 F/BW must be available.
    #[inline(always)]
    pub(super) unsafe fn apply(&self, sum: __m512i, m: __m512, res: Option<__m128i>) -> __m128i {
        use super::requant::LIMIT;
        // SAFETY: the caller's preconditions; register operations only.
        unsafe {
            let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), m);
            if let (Some((rz, rm)), Some(res)) = (self.residual, res) {
                let d = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(res), rz));
                v = _mm512_add_ps(v, _mm512_mul_ps(d, rm));
            }
            let number = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
            let c = _mm512_min_ps(
                _mm512_max_ps(v, _mm512_set1_ps(-LIMIT)),
                _mm512_set1_ps(LIMIT),
            );
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let i = _mm512_maskz_cvt_roundps_epi32::<NEAREST>(number, c);
            let y = _mm512_add_epi32(i, self.zero);
            _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(y, self.lo), self.hi))
        }
    }
}

/// Adds `v` to the 8 accumulators at `p`.
///
/// # Safety
/// AVX2 must be available and `p` valid for 8 i32 reads and writes.
#[inline(always)]
pub(super) unsafe fn add_to(p: *mut i32, v: __m256i) {
    // SAFETY: the caller's preconditions.
    unsafe {
        let p = p as *mut __m256i;
        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), v));
    }
}

/// Accumulates quads `q0..q1` for outputs `o_begin..n`; `dp` is `vpdpbusd` on 8 lanes in one
/// encoding or the other.
/// Output tiles: 16 (4 rows x 2 vectors: 8 independent accumulators, enough to cover the
/// instruction's latency), then 8, then 4 (the 4-channel groups of ResNeXt's first stage, two
/// rows per vector), then one by one.
///
/// # Safety
/// AVX2 and the `dp` instructions must be available; `patch` must hold `rows * depth_bytes` bytes, `w`
/// `depth_bytes * n`, `acc` rows of `n` accumulators `ldc` apart, and `q0 <= q1 <= depth_bytes / 4`.
#[inline(always)]
pub(super) unsafe fn dot_vnni_body(
    Vnni {
        rows,
        patch,
        depth_bytes,
        w,
        n,
        acc,
        ldc,
        q0,
        q1,
    }: Vnni,
    o_begin: usize,
    dp: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
) {
    // The input quad of row r at quad q, as one i32 to broadcast.
    let quad = |r: usize, q: usize| -> i32 {
        // SAFETY: r < rows and q < depth_bytes / 4, so the four bytes at r * depth_bytes + 4q are inside `patch`.
        unsafe { (patch.add(r * depth_bytes + 4 * q) as *const i32).read_unaligned() }
    };
    // Weights of quad q for outputs o..o + 8 (`o + 8 <= n`).
    let wload = |q: usize, o: usize| -> __m256i {
        // SAFETY: (q * n + o) * 4 + 32 <= depth_bytes * n because o + 8 <= n and q < depth_bytes / 4.
        unsafe { _mm256_loadu_si256(w.add((q * n + o) * 4) as *const __m256i) }
    };
    let mut o = o_begin;
    // SAFETY: every intrinsic and pointer below: the features are enabled by the caller, and
    // each access stays inside the bounds stated above, as the loop conditions ensure.
    unsafe {
        while o + 16 <= n {
            let mut r0 = 0;
            while r0 + 4 <= rows {
                let z = _mm256_setzero_si256();
                let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
                let (mut b0, mut b1, mut b2, mut b3) = (z, z, z, z);
                for q in q0..q1 {
                    let (wa, wb) = (wload(q, o), wload(q, o + 8));
                    let x0 = _mm256_set1_epi32(quad(r0, q));
                    let x1 = _mm256_set1_epi32(quad(r0 + 1, q));
                    let x2 = _mm256_set1_epi32(quad(r0 + 2, q));
                    let x3 = _mm256_set1_epi32(quad(r0 + 3, q));
                    a0 = dp(a0, x0, wa);
                    b0 = dp(b0, x0, wb);
                    a1 = dp(a1, x1, wa);
                    b1 = dp(b1, x1, wb);
                    a2 = dp(a2, x2, wa);
                    b2 = dp(b2, x2, wb);
                    a3 = dp(a3, x3, wa);
                    b3 = dp(b3, x3, wb);
                }
                for (r, (a, b)) in [(a0, b0), (a1, b1), (a2, b2), (a3, b3)]
                    .into_iter()
                    .enumerate()
                {
                    add_to(acc.add((r0 + r) * ldc + o), a);
                    add_to(acc.add((r0 + r) * ldc + o + 8), b);
                }
                r0 += 4;
            }
            while r0 < rows {
                let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for q in q0..q1 {
                    let x = _mm256_set1_epi32(quad(r0, q));
                    a = dp(a, x, wload(q, o));
                    b = dp(b, x, wload(q, o + 8));
                }
                add_to(acc.add(r0 * ldc + o), a);
                add_to(acc.add(r0 * ldc + o + 8), b);
                r0 += 1;
            }
            o += 16;
        }
        while o + 8 <= n {
            let mut r0 = 0;
            while r0 + 4 <= rows {
                let z = _mm256_setzero_si256();
                let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
                for q in q0..q1 {
                    let wv = wload(q, o);
                    a0 = dp(a0, _mm256_set1_epi32(quad(r0, q)), wv);
                    a1 = dp(a1, _mm256_set1_epi32(quad(r0 + 1, q)), wv);
                    a2 = dp(a2, _mm256_set1_epi32(quad(r0 + 2, q)), wv);
                    a3 = dp(a3, _mm256_set1_epi32(quad(r0 + 3, q)), wv);
                }
                for (r, a) in [a0, a1, a2, a3].into_iter().enumerate() {
                    add_to(acc.add((r0 + r) * ldc + o), a);
                }
                r0 += 4;
            }
            while r0 < rows {
                let mut a = _mm256_setzero_si256();
                for q in q0..q1 {
                    a = dp(a, _mm256_set1_epi32(quad(r0, q)), wload(q, o));
                }
                add_to(acc.add(r0 * ldc + o), a);
                r0 += 1;
            }
            o += 8;
        }
        while o + 4 <= n {
            // Two rows per 256-bit vector: lanes 0-3 row r, lanes 4-7 row r + 1, against the
            // same 4 outputs' weights in both halves.
            let mut r0 = 0;
            while r0 < rows {
                let two = r0 + 1 < rows;
                let mut a = _mm256_setzero_si256();
                for q in q0..q1 {
                    let w4 = _mm_loadu_si128(w.add((q * n + o) * 4) as *const __m128i);
                    let wv = _mm256_set_m128i(w4, w4);
                    let hi = if two { quad(r0 + 1, q) } else { 0 };
                    let x = _mm256_set_m128i(_mm_set1_epi32(hi), _mm_set1_epi32(quad(r0, q)));
                    a = dp(a, x, wv);
                }
                let p = acc.add(r0 * ldc + o) as *mut __m128i;
                _mm_storeu_si128(
                    p,
                    _mm_add_epi32(_mm_loadu_si128(p), _mm256_castsi256_si128(a)),
                );
                if two {
                    let p = acc.add((r0 + 1) * ldc + o) as *mut __m128i;
                    let upper = _mm256_extracti128_si256::<1>(a);
                    _mm_storeu_si128(p, _mm_add_epi32(_mm_loadu_si128(p), upper));
                }
                r0 += 2;
            }
            o += 4;
        }
        while o < n {
            for r in 0..rows {
                let mut s = 0i32;
                for q in q0..q1 {
                    for t in 0..4 {
                        s += *patch.add(r * depth_bytes + 4 * q + t) as i32
                            * *w.add((q * n + o) * 4 + t) as i32;
                    }
                }
                *acc.add(r * ldc + o) += s;
            }
            o += 1;
        }
    }
}

//! x86_64 AVX2 twins of the generic u8-quad kernels, for the CPUs without VNNI (AMD before
//! Zen 4, Intel before Ice Lake and Alder Lake).
//!
//! AVX2 has no exact 8-bit dot product: `vpmaddubsw` saturates its pairs of products at i16
//! (onnxruntime's kernels accept that; these may not). So each `vpdpbusd` of the VNNI kernels
//! becomes two `vpmaddwd` on i16 pairs: a quad's bytes 0 and 2 (inputs zero-extended, weights
//! sign-extended) in one, bytes 1 and 3 in the other. A pair of products is at most
//! 2 * 255 * 128 in magnitude, exact in the i32 lanes. That is 16 multiply-adds per `vpmaddwd`,
//! as many per multiply as onnxruntime's `vpmaddubsw` + `vpmaddwd` (32 per two). Each row's
//! input quad is split once, shared by a tile's vectors; the weights once per tile and quad,
//! shared by its rows. The requantizing dot kernel (the pointwise convolutions, most of a
//! ResNeXt's work) does better: it widens a block of rows once for all its outputs, and splits
//! a 16-output slice's weights once for all the block's rows, so that its inner loop is the
//! `vpmaddwd`s, their additions and loads.
//!
//! Kernels: the dot product (the tiles of the VNNI body in [`super::x86_64`]); the dot
//! product that requantizes its own tiles (up to 4 rows x 16 outputs over the whole depth in 8
//! accumulators). The direct convolution that shares `Pairs`, `dot` and `Avx2Requant` is
//! [`super::avx2_direct`].

use super::requant::{TileRequant, LIMIT};
use super::x86_64::{dot_u8_blocks, dot_vnni_body, Fused, Vnni};
use std::arch::x86_64::*;
use std::cell::Cell;

/// Whether the CPU has AVX2.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// 8 quads as i16 pairs: `e` holds bytes 0 and 2 of each quad, `o` bytes 1 and 3.
#[derive(Clone, Copy)]
pub(super) struct Pairs {
    pub(super) e: __m256i,
    pub(super) o: __m256i,
}

impl Pairs {
    /// 8 input quads (u8), zero-extended.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    pub(super) unsafe fn inputs(x: __m256i) -> Pairs {
        // SAFETY: the caller's preconditions; register operations only.
        unsafe {
            Pairs {
                e: _mm256_and_si256(x, _mm256_set1_epi16(0xff)),
                o: _mm256_srli_epi16::<8>(x),
            }
        }
    }

    /// 8 weight quads (i8), sign-extended.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    pub(super) unsafe fn weights(w: __m256i) -> Pairs {
        // SAFETY: the caller's preconditions; register operations only.
        unsafe {
            Pairs {
                e: _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(w)),
                o: _mm256_srai_epi16::<8>(w),
            }
        }
    }
}

/// `acc` plus, in each lane, the dot product of its input quad and its weight quad: what
/// `vpdpbusd` computes, exactly.
///
/// # Safety
/// AVX2 must be available.
#[inline(always)]
pub(super) unsafe fn dot(acc: __m256i, x: Pairs, w: Pairs) -> __m256i {
    // SAFETY: the caller's preconditions; register operations only.
    unsafe {
        let even = _mm256_madd_epi16(x.e, w.e);
        let odd = _mm256_madd_epi16(x.o, w.o);
        _mm256_add_epi32(acc, _mm256_add_epi32(even, odd))
    }
}

/// The lanes below `lanes` (0 to 8) of a vector, as a mask for `vpmaskmovd`.
///
/// # Safety
/// AVX2 must be available.
#[inline(always)]
pub(super) unsafe fn lane_mask(lanes: usize) -> __m256i {
    // SAFETY: the caller's preconditions; register operations only.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(lanes as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// AVX2 twin of [`super::generic::dot_u8i8`]; falls back to it without AVX2.
pub fn dot_u8i8_avx2(
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
    // SAFETY: the body: AVX2 is present (checked above) and `dot_u8_blocks` hands in
    // arguments in bounds with q0 <= q1 <= depth_bytes / 4.
    dot_u8_blocks(rows, patch, depth_bytes, w, n, acc, &|args| unsafe {
        dot_body(args)
    })
}

/// # Safety
/// AVX2 must be available; the rest as for [`dot_vnni_body`].
#[target_feature(enable = "avx2")]
unsafe fn dot_body(args: Vnni) {
    // SAFETY: forwarded preconditions; the closure runs inside this feature-enabled function.
    unsafe {
        dot_vnni_body(args, 0, |acc, x, w| {
            dot(acc, Pairs::inputs(x), Pairs::weights(w))
        })
    }
}

/// AVX2 twin of [`super::generic::dot_u8i8_requant`] for `n` a multiple of
/// [`crate::signatures::PANEL`]; the generic kernel otherwise, or without AVX2.
///
/// Tiles of up to 4 rows x 16 outputs, each over the whole depth, so that its 8 accumulators
/// stay in registers until the requantization runs on them (`Avx2Requant`).
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant_avx2(
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
    if !available() || !n.is_multiple_of(crate::signatures::PANEL) {
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
    // SAFETY: AVX2 is present (checked above); `fits_requant` holds (asserted above): rows *
    // depth_bytes patch bytes, depth_bytes * n weights in panels of 32, n biases and multipliers, and rows of n
    // outputs (and residual inputs) ldo apart.
    unsafe { fused_slices(&f, rows, n) }
}

/// A quad's weights of 16 outputs, split into i16 pairs: outputs 0-7 (even bytes, odd bytes),
/// then outputs 8-15.
type Split16 = [__m256i; 4];

thread_local! {
    /// The split weights of the 16 outputs a [`fused_slices`] call is at, kept between calls.
    static SPLIT: Cell<Vec<Split16>> = const { Cell::new(Vec::new()) };
    /// The rows of the block a [`fused_slices`] call is at, widened ([`widen`]).
    static WIDE: Cell<Vec<i16>> = const { Cell::new(Vec::new()) };
}

/// Bytes of widened rows in one block of [`fused_slices`]: with a slice's split weights, well
/// within L2 (512 KB on Zen 3). Small in tests, so that their few rows span several blocks.
const WIDE_BYTES: usize = if cfg!(test) { 1024 } else { 192 * 1024 };

/// Copies `len` bytes (whole quads) from `src` to `dst` as i16, each quad `[x0, x1, x2, x3]`
/// as `[x0, x2, x1, x3]`: one 32-bit broadcast then gives the pairs of bytes 0 and 2 of
/// [`Pairs::inputs`], the next one those of bytes 1 and 3.
///
/// # Safety
/// AVX2 must be available; `src` readable for `len` bytes, `dst` writable for `len` i16, `len`
/// a multiple of 4.
#[inline(always)]
unsafe fn widen(src: *const u8, len: usize, dst: *mut i16) {
    // SAFETY: the caller's preconditions; every access is below `len`.
    unsafe {
        let order = _mm_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
        let mut i = 0;
        while i + 16 <= len {
            let v = _mm_shuffle_epi8(_mm_loadu_si128(src.add(i).cast()), order);
            _mm256_storeu_si256(dst.add(i).cast(), _mm256_cvtepu8_epi16(v));
            i += 16;
        }
        while i < len {
            for (j, k) in [0, 2, 1, 3].into_iter().enumerate() {
                *dst.add(i + j) = *src.add(i + k) as i16;
            }
            i += 4;
        }
    }
}

/// # Safety
/// AVX2 must be available; the operands of `f` as [`dot_u8i8_requant_avx2`] checks them, for
/// `rows` rows and `n` (a multiple of 32) outputs.
#[target_feature(enable = "avx2")]
unsafe fn fused_slices(f: &Fused, rows: usize, n: usize) {
    let quads = f.depth_bytes / 4;
    // Split weights take twice the bytes: up to 128 quads (16 KB) they stay in L1 with the
    // rows; deeper, the tiles split their own (layer4.1.conv3, 256 quads, ran 11 % slower on
    // a 32 KB buffer).
    let presplit = quads <= 128;
    let mut split = SPLIT.take();
    split.resize(
        if presplit { quads } else { 0 },
        [_mm256_setzero_si256(); 4],
    );
    // The rows in blocks, each widened once for all its slices of outputs (split in the tiles,
    // 8 of a quad step's 40 vector instructions would be the rows' shifts and masks).
    let block = (WIDE_BYTES / (2 * f.depth_bytes)).max(4);
    let mut wide = WIDE.take();
    wide.resize(block.min(rows) * f.depth_bytes, 0);
    // SAFETY: the feature is enabled here; a block's rows b0..b0 + rb are inside the patch and
    // `wide` holds rb * depth_bytes i16; in the 32-output panel holding outputs o..o + 16, quad q's
    // weights of those outputs are the 64 bytes at q * 128 + (o % 32) * 4 (q < depth_bytes / 4), and
    // the next panel lies inside `w` when o + 32 < n; every tile's rows are below the block's
    // and its outputs o..o + 16 below `n`, as `fused_tile` requires.
    unsafe {
        let mut b0 = 0;
        while b0 < rows {
            let rb = block.min(rows - b0);
            widen(
                f.patch.add(b0 * f.depth_bytes),
                rb * f.depth_bytes,
                wide.as_mut_ptr(),
            );
            // Rows in as few tiles as 4-row tiles would take, of even sizes (49 rows: 4 x 4 +
            // 11 x 3, not 12 x 4 + 1): a short tile costs as many weight loads as a full one.
            let tiles = rb.div_ceil(4);
            for o in (0..n).step_by(16) {
                let w = f.w.add(o / 32 * 32 * f.depth_bytes + o % 32 * 4);
                // Quad q's weights of the 16 outputs, split.
                let raw = |q: usize| {
                    let a = Pairs::weights(_mm256_loadu_si256(w.add(q * 128) as *const __m256i));
                    let b =
                        Pairs::weights(_mm256_loadu_si256(w.add(q * 128 + 32) as *const __m256i));
                    (a, b)
                };
                // The next panel's weights go into L2 (they come from L3 or memory once per
                // inference: the model's 25 MB do not stay in L2), a quad's lines at a time
                // along the split, or along the first tile of rows.
                let mut next = if b0 == 0 && o % 32 == 0 && o + 32 < n {
                    f.w.add((o + 32) * f.depth_bytes)
                } else {
                    std::ptr::null()
                };
                // The 16 outputs' weights split once, for every tile of the block (split in
                // the tiles, 6 of a quad step's 46 vector instructions would be their shifts).
                for (q, sq) in split.iter_mut().enumerate() {
                    let (a, b) = raw(q);
                    *sq = [a.e, a.o, b.e, b.o];
                    prefetch_quad(next, q);
                }
                if presplit {
                    next = std::ptr::null();
                }
                let stored = |q: usize| {
                    let [ae, ao, be, bo] = split[q];
                    (Pairs { e: ae, o: ao }, Pairs { e: be, o: bo })
                };
                let mut r0 = 0;
                for t in 0..tiles {
                    let r = rb / tiles + usize::from(t < rb % tiles);
                    let rows = (wide.as_ptr().add(r0 * f.depth_bytes), b0 + r0, r);
                    if presplit {
                        tile_rows(f, rows, o, &stored, next);
                    } else {
                        tile_rows(f, rows, o, &raw, next);
                    }
                    next = std::ptr::null();
                    r0 += r;
                }
            }
            b0 += rb;
        }
    }
    WIDE.set(wide);
    SPLIT.set(split);
}

/// A tile of `r` (1 to 4) rows: [`fused_tile`] (`x` their widened inputs, `r0` the first one's
/// row in the call).
///
/// # Safety
/// As for [`fused_tile`].
#[inline(always)]
unsafe fn tile_rows(
    f: &Fused,
    (x, r0, r): (*const i16, usize, usize),
    o: usize,
    weights: &impl Fn(usize) -> (Pairs, Pairs),
    next: *const i8,
) {
    // SAFETY: the caller's preconditions.
    unsafe {
        match r {
            4 => fused_tile::<4>(f, (x, r0), o, weights, next),
            3 => fused_tile::<3>(f, (x, r0), o, weights, next),
            2 => fused_tile::<2>(f, (x, r0), o, weights, next),
            _ => fused_tile::<1>(f, (x, r0), o, weights, next),
        }
    }
}

/// Fetches quad `q`'s two lines of the panel at `next` into L2, if `next` is not null.
///
/// # Safety
/// AVX2 must be available (any pointer may be prefetched; the prefetch never faults).
#[inline(always)]
unsafe fn prefetch_quad(next: *const i8, q: usize) {
    if !next.is_null() {
        // SAFETY: the caller's preconditions; a prefetch reads nothing the program sees.
        unsafe {
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(q * 128));
            _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(q * 128 + 64));
        }
    }
}

/// Rows `r0..r0 + R` x outputs `o..o + 16` of [`fused_slices`], whose inputs are widened at
/// `x` (`depth_bytes` i16 per row) and whose split weights of quad q `weights(q)` gives: the products
/// over the whole depth, then the requantization.
///
/// # Safety
/// As for [`fused_slices`], and `r0 + R <= rows`, `o + 16 <= n`; `x` holds `R` widened rows;
/// `weights` sound for every quad below `depth_bytes / 4`; `next` null or a panel to prefetch along the
/// depth.
#[inline(always)]
unsafe fn fused_tile<const R: usize>(
    f: &Fused,
    (x, r0): (*const i16, usize),
    o: usize,
    weights: &impl Fn(usize) -> (Pairs, Pairs),
    next: *const i8,
) {
    // SAFETY: every intrinsic and pointer below: the caller enables AVX2; R widened rows at
    // `x` (depth_bytes i16 each); outputs o..o + 16 of the biases and multipliers, and bytes o..o + 16
    // of output and residual rows r0..r0 + R are in bounds.
    unsafe {
        // The accumulators start from the biases (i32 additions wrap: any order gives the same).
        // (Arrays written out: `array::map`'s closure is not always inlined, and outside this
        // function's target feature an intrinsic is a call.)
        let bias = f.bias.add(o) as *const __m256i;
        let bias = [_mm256_loadu_si256(bias), _mm256_loadu_si256(bias.add(1))];
        let mut a = [bias; R];
        for q in 0..f.depth_bytes / 4 {
            let (wa, wb) = weights(q);
            prefetch_quad(next, q);
            for (r, ar) in a.iter_mut().enumerate() {
                let p = x.add(r * f.depth_bytes + 4 * q) as *const i32;
                let x = Pairs {
                    e: _mm256_set1_epi32(p.read_unaligned()),
                    o: _mm256_set1_epi32(p.add(1).read_unaligned()),
                };
                ar[0] = dot(ar[0], x, wa);
                ar[1] = dot(ar[1], x, wb);
            }
        }
        let rq = Avx2Requant::new(f.bounds, f.residual.map(|(r, _)| r));
        let mult = f.multiplier.add(o);
        let mult = [_mm256_loadu_ps(mult), _mm256_loadu_ps(mult.add(8))];
        // Each row's 16 values, rounded (before the zero point), and where they go. (Loops,
        // not closures: a closure that is not inlined would lose the target feature.)
        let mut rounded = [[_mm256_setzero_si256(); 2]; R];
        let mut out = [f.out; R];
        for (r, ((vr, acc), out)) in rounded.iter_mut().zip(&a).zip(&mut out).enumerate() {
            let at = (r0 + r) * f.ldo + o;
            *out = f.out.add(at);
            for (h, (v, &acc)) in vr.iter_mut().zip(acc).enumerate() {
                let res = f
                    .residual
                    .map(|(_, res)| _mm_loadl_epi64(res.add(at + 8 * h).cast()));
                *v = rq.rounded(acc, mult[h], res);
            }
        }
        if let Some(bytes) = Bytes16::new(f.bounds) {
            let mut r = 0;
            while r + 1 < R {
                bytes.store_rows((rounded[r], out[r]), Some((rounded[r + 1], out[r + 1])));
                r += 2;
            }
            if r < R {
                bytes.store_rows((rounded[r], out[r]), None);
            }
        } else {
            for (out, vr) in out.iter().zip(&rounded) {
                for (h, &v) in vr.iter().enumerate() {
                    _mm_storel_epi64(out.add(8 * h).cast(), rq.finish(v));
                }
            }
        }
    }
}

/// The end of a requantization on rows of 16 outputs when the zero point and bounds are those
/// of u8 outputs (a model's always are): two rows at once, narrowed with saturation (i32 to
/// i16, the zero point added at i16 with saturation, i16 to u8), then clamped as bytes. With
/// `0 <= lo <= hi <= 255` and `|zero| <= 32000` the saturations keep every value on the side
/// of the bounds it was on, so the bytes are those of [`Avx2Requant::finish`].
#[derive(Clone, Copy)]
struct Bytes16 {
    zero: __m256i,
    lo: __m256i,
    hi: __m256i,
}

impl Bytes16 {
    /// The constants for `(zero, lo, hi)`, if they allow this path.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    unsafe fn new((zero, lo, hi): (i32, i32, i32)) -> Option<Self> {
        if !(0 <= lo && lo <= hi && hi <= 255 && (-32000..=32000).contains(&zero)) {
            return None;
        }
        // SAFETY: the caller's preconditions; register operations only.
        unsafe {
            Some(Bytes16 {
                zero: _mm256_set1_epi16(zero as i16),
                lo: _mm256_set1_epi8(lo as u8 as i8),
                hi: _mm256_set1_epi8(hi as u8 as i8),
            })
        }
    }

    /// Stores the 16 outputs of each row (its two vectors of rounded values, from
    /// [`Avx2Requant::rounded`]) at its pointer; the second row is optional.
    ///
    /// # Safety
    /// AVX2 must be available; each pointer writable for 16 bytes.
    #[inline(always)]
    unsafe fn store_rows(
        &self,
        (first, at): ([__m256i; 2], *mut u8),
        second: Option<([__m256i; 2], *mut u8)>,
    ) {
        // SAFETY: the caller's preconditions.
        unsafe {
            let p0 = _mm256_adds_epi16(_mm256_packs_epi32(first[0], first[1]), self.zero);
            let p1 = match second {
                Some(([v0, v1], _)) => _mm256_adds_epi16(_mm256_packs_epi32(v0, v1), self.zero),
                None => p0,
            };
            // Dwords per 128-bit half: [r0 v0 0-3, r0 v1 0-3, r1 v0 0-3, r1 v1 0-3], then the
            // same of lanes 4-7: row 0's bytes are dwords 0, 4, 1, 5; row 1's 2, 6, 3, 7.
            let b = _mm256_packus_epi16(p0, p1);
            let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            let b = _mm256_min_epu8(_mm256_max_epu8(b, self.lo), self.hi);
            _mm_storeu_si128(at.cast(), _mm256_castsi256_si128(b));
            if let Some((_, at)) = second {
                _mm_storeu_si128(at.cast(), _mm256_extracti128_si256::<1>(b));
            }
        }
    }
}

/// The constants of [`super::requant::requantize`] on 8 lanes.
#[derive(Clone, Copy)]
pub(super) struct Avx2Requant {
    zero: __m256i,
    lo: __m256i,
    hi: __m256i,
    /// The residual's zero point and multiplier.
    residual: Option<(__m256i, __m256)>,
}

impl Avx2Requant {
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    pub(super) unsafe fn new(
        (zero, lo, hi): (i32, i32, i32),
        residual: Option<(i32, f32)>,
    ) -> Self {
        // SAFETY: the caller's preconditions.
        unsafe {
            Avx2Requant {
                zero: _mm256_set1_epi32(zero),
                lo: _mm256_set1_epi32(lo),
                hi: _mm256_set1_epi32(hi),
                residual: residual.map(|(z, m)| (_mm256_set1_epi32(z), _mm256_set1_ps(m))),
            }
        }
    }

    /// The 8 outputs (the low 8 bytes) of accumulators `sum` (bias included), multipliers `m`
    /// and the 8 residual inputs in the low bytes of `res` (used only when there is a
    /// residual): the f32 operations of [`super::requant::requantize`] in the same order
    /// (`vcvtdq2ps` rounds to nearest as `as f32` does; the clamp to +-2^22 and the rounding
    /// of `round_half_even`; NaN masked to 0, which the clamp would turn into a bound), then
    /// the low byte of each lane (`as u8`).
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    pub(super) unsafe fn apply(&self, sum: __m256i, m: __m256, res: Option<__m128i>) -> __m128i {
        // SAFETY: the caller's preconditions.
        unsafe { self.finish(self.rounded(sum, m, res)) }
    }

    /// The first part of [`Self::apply`]: [`super::requant::round_half_even`] of the 8 values,
    /// before the zero point. `vcvtps2dq` rounds ties to even (the default rounding mode,
    /// which Rust code runs in), as the magic-number addition does within the clamp.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    unsafe fn rounded(&self, sum: __m256i, m: __m256, res: Option<__m128i>) -> __m256i {
        // SAFETY: the caller's preconditions; register operations only.
        unsafe {
            let mut v = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), m);
            if let (Some((rz, rm)), Some(res)) = (self.residual, res) {
                let d = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(res), rz));
                v = _mm256_add_ps(v, _mm256_mul_ps(d, rm));
            }
            let number = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(v, v));
            let c = _mm256_min_ps(
                _mm256_max_ps(v, _mm256_set1_ps(-LIMIT)),
                _mm256_set1_ps(LIMIT),
            );
            _mm256_and_si256(_mm256_cvtps_epi32(c), number)
        }
    }

    /// The second part of [`Self::apply`]: the zero point added to the rounded values `i`, the
    /// clamp, the low byte of each lane.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[inline(always)]
    unsafe fn finish(&self, i: __m256i) -> __m128i {
        // SAFETY: the caller's preconditions; register operations only.
        unsafe {
            let y = _mm256_add_epi32(i, self.zero);
            let y = _mm256_min_epi32(_mm256_max_epi32(y, self.lo), self.hi);
            // Bytes 0, 4, 8 and 12 of each half, then the halves' four side by side.
            #[rustfmt::skip]
            let low = _mm256_setr_epi8(
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
            );
            let b = _mm256_shuffle_epi8(y, low);
            _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b))
        }
    }
}

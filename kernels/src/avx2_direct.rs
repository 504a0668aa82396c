//! The AVX2 direct convolution (grouped and small dense convolutions read in place, no
//! gathered patches): up to 4 pixels x 16 output channels per tile in two vectors of 8 lanes,
//! each `vpdpbusd` of the VNNI twin ([`super::vnni_direct`]) two `vpmaddwd` on i16 pairs
//! ([`super::avx2`]). In groups of 4 or 8 channels each lane's input quad comes from one 16-byte
//! load by `vpshufb`, which also widens it. The pixel walk is `pixel_tiles`, as for
//! every SIMD direct kernel.

use super::avx2::{available, dot, lane_mask, Avx2Requant, Pairs};
use super::requant::TileRequant;
use super::x86_64::add_to;
use crate::direct_entry::{direct_kernels, TileOut};
use crate::signatures::DirectShape;
use std::arch::x86_64::*;

direct_kernels! {
    features: "avx2",
    simd: available(),
    /// AVX2 twin of [`super::generic::direct_u8`]; the generic kernel for shapes outside
    /// [`DirectShape::supported`] or without AVX2.
    acc: direct_u8_avx2,
    /// AVX2 twin of [`super::generic::direct_u8_requant`]: the tiles of [`direct_u8_avx2`], each
    /// requantized in registers (`Avx2Requant`) and stored as bytes.
    requant: direct_u8_requant_avx2,
    add: add_tile,
    constants: Avx2Requant,
}

/// Adds a tile's vector `a` to the `lanes` (at most 8) accumulators at `d`.
///
/// # Safety
/// AVX2 must be available; `d` must hold `lanes` accumulators (masked loads and stores leave
/// out the lanes beyond them).
#[inline(always)]
unsafe fn add_tile(d: *mut i32, lanes: usize, a: __m256i) {
    // SAFETY: the caller's preconditions.
    unsafe {
        if lanes == 8 {
            add_to(d, a);
        } else {
            let m = lane_mask(lanes);
            let sum = _mm256_add_epi32(_mm256_maskload_epi32(d, m), a);
            _mm256_maskstore_epi32(d, m, sum);
        }
    }
}

impl TileOut<Avx2Requant> {
    /// The `lanes` (at most 8) outputs at byte `at` of channels `o..o + lanes` from
    /// accumulators `a`.
    ///
    /// # Safety
    /// AVX2 must be available; channels `o..o + lanes` within the layer's biases and
    /// multipliers, bytes `at..at + lanes` within the outputs (and the residual inputs). A
    /// vector of fewer than 8 lanes (the last of a dense convolution) loads and stores only
    /// its lanes.
    #[inline(always)]
    unsafe fn store(&self, at: usize, o: usize, lanes: usize, a: __m256i) {
        let q = &self.q;
        // SAFETY: the caller's preconditions.
        unsafe {
            if lanes == 8 {
                let b = _mm256_loadu_si256(self.bias.add(o) as *const __m256i);
                let mv = _mm256_loadu_ps(self.mult.add(o));
                let r = self.residual.map(|r| _mm_loadl_epi64(r.add(at).cast()));
                _mm_storel_epi64(
                    self.out.add(at).cast(),
                    q.apply(_mm256_add_epi32(a, b), mv, r),
                );
            } else {
                let m = lane_mask(lanes);
                let b = _mm256_maskload_epi32(self.bias.add(o), m);
                let mv = _mm256_maskload_ps(self.mult.add(o), m);
                let r = self.residual.map(|r| {
                    let mut t = [0u8; 16];
                    std::ptr::copy_nonoverlapping(r.add(at), t.as_mut_ptr(), lanes);
                    _mm_loadu_si128(t.as_ptr().cast())
                });
                let y = q.apply(_mm256_add_epi32(a, b), mv, r);
                let mut t = [0u8; 16];
                _mm_storeu_si128(t.as_mut_ptr().cast(), y);
                std::ptr::copy_nonoverlapping(t.as_ptr(), self.out.add(at), lanes);
            }
        }
    }
}

/// The `vpshufb` patterns that give each lane of the vector of output channels `8h..8h + 8`
/// (of a 16-channel block in groups of `cout` = 4 or 8 channels, `cin == cout`) its group's
/// input quad `q` as i16 pairs, from the block's 16 input bytes loaded in both halves. The
/// four lanes of a half share a group: input dword `d = (8h + 4 * half) / cout * quads + q`.
///
/// # Safety
/// AVX2 must be available.
#[inline(always)]
unsafe fn spread_patterns(cout: usize, quads: usize) -> [[Pairs; 2]; 2] {
    let pattern = |h: usize, q: usize, odd: usize| -> [u8; 32] {
        std::array::from_fn(|i| {
            let (half, t) = (i / 16, i % 4);
            let d = (8 * h + 4 * half) / cout * quads + q;
            match t {
                0 | 2 => ((4 * d + t + odd) & 15) as u8,
                _ => 0x80, // the pair's upper byte: zero
            }
        })
    };
    std::array::from_fn(|h| {
        std::array::from_fn(|q| {
            let (e, o) = (pattern(h, q, 0), pattern(h, q, 1));
            // SAFETY: the caller's preconditions; reads the 32 bytes of each array.
            unsafe {
                Pairs {
                    e: _mm256_loadu_si256(e.as_ptr() as *const __m256i),
                    o: _mm256_loadu_si256(o.as_ptr() as *const __m256i),
                }
            }
        })
    })
}

/// Runs the direct tiles over `pixels` pixels (4 at a time, then 2, 1: `pixel_tiles`), handing each pixel's
/// accumulators for output channels `o..o + 8` (the first `lanes` of them real) to
/// `end(pixel, o, lanes, acc)`.
///
/// # Safety
/// AVX2 must be available; `s` supported; `xp` must hold the windows of `pixels` pixels, `w`
/// the weights of `s`; `end` must be sound for every pixel and vector.
#[inline(always)]
unsafe fn direct_tiles(
    s: &DirectShape,
    xp: *const u8,
    pixels: usize,
    w: *const i8,
    end: &impl Fn(usize, usize, usize, __m256i),
) {
    // SAFETY: the caller's preconditions.
    let spread = unsafe { spread_patterns(s.cout.min(16), s.cin / 4) };
    crate::signatures::pixel_tiles(pixels, 4, |p, n| {
        // SAFETY: pixels p..p + n read inside `xp` from offset p * stride * in_c (the
        // caller's bounds); `end` gets pixel indices from p.
        unsafe {
            let x = xp.add(p * s.stride * s.in_c);
            let end = |i: usize, o: usize, lanes: usize, a: __m256i| end(p + i, o, lanes, a);
            match n {
                4 => direct_tile::<4>(s, x, w, &spread, &end),
                2 => direct_tile::<2>(s, x, w, &spread, &end),
                _ => direct_tile::<1>(s, x, w, &spread, &end),
            }
        }
    });
}

/// `P` pixels of [`direct_tiles`]: per block of 16 output channels two vectors of 8, each
/// ending in `end`.
///
/// # Safety
/// AVX2 must be available; `s` supported; `xp` must hold the windows of `P` pixels, `w` the
/// weights of `s`; `end` sound for pixels `0..P`.
#[target_feature(enable = "avx2")]
unsafe fn direct_tile<const P: usize>(
    s: &DirectShape,
    xp: *const u8,
    w: *const i8,
    spread: &[[Pairs; 2]; 2],
    end: &impl Fn(usize, usize, usize, __m256i),
) {
    let (in_c, out_c, k) = (s.in_c, s.out_c, s.kernel);
    let step = s.stride * in_c;
    let quads = s.cin / 4;
    // One group per block: a broadcast of its quad serves every lane.
    let broadcast = s.cout.is_multiple_of(16) || s.cout == out_c;
    // SAFETY: every intrinsic and pointer below: the feature is enabled here; reads stay
    // within the windows of the P pixels (tap offsets < (k - 1) * row + k * in_c, a group's
    // channels within in_c; the 16-byte loads only when 16 | out_c, so they end by
    // out_c <= in_c), weights within k * k * quads * out_c * 4 bytes (a block narrower than 16
    // loads only its lanes) and `end` gets pixels below P and lanes below out_c.
    unsafe {
        let mut o0 = 0;
        while o0 < out_c {
            // Output channels of this block (fewer than 16 only in the last block of a dense
            // convolution): masked weight loads, and `end` told how many lanes are real.
            let lanes = (out_c - o0).min(16);
            let masks = (lane_mask(lanes.min(8)), lane_mask(lanes.saturating_sub(8)));
            let mut a = [[_mm256_setzero_si256(); 2]; P];
            // This block's weights (`DirectShape::weight_at`), `lanes` quads per tap and quad.
            let wb = w.add(s.weight_at(0, 0, o0));
            for ky in 0..k {
                for kx in 0..k {
                    let off = ky * s.row + kx * in_c;
                    let tap = ky * k + kx;
                    // `spread` has the patterns of the first two quads only (spread groups
                    // have no more); broadcast shapes have more quads and never index it.
                    #[allow(clippy::needless_range_loop)]
                    for q in 0..quads {
                        let wq = wb.add((tap * quads + q) * lanes * 4);
                        let (wa, wv) = if lanes == 16 {
                            (
                                _mm256_loadu_si256(wq as *const __m256i),
                                _mm256_loadu_si256(wq.add(32) as *const __m256i),
                            )
                        } else {
                            (
                                _mm256_maskload_epi32(wq as *const i32, masks.0),
                                _mm256_maskload_epi32(wq.wrapping_add(32) as *const i32, masks.1),
                            )
                        };
                        let wv = [Pairs::weights(wa), Pairs::weights(wv)];
                        if broadcast {
                            let at = off + o0 / s.cout * s.cin + 4 * q;
                            for (p, ap) in a.iter_mut().enumerate() {
                                let v = (xp.add(p * step + at) as *const i32).read_unaligned();
                                let x = Pairs::inputs(_mm256_set1_epi32(v));
                                ap[0] = dot(ap[0], x, wv[0]);
                                ap[1] = dot(ap[1], x, wv[1]);
                            }
                        } else {
                            let at = off + o0;
                            for (p, ap) in a.iter_mut().enumerate() {
                                let v = _mm_loadu_si128(xp.add(p * step + at) as *const __m128i);
                                let v = _mm256_broadcastsi128_si256(v);
                                for (h, ah) in ap.iter_mut().enumerate() {
                                    let sp = spread[h][q];
                                    let x = Pairs {
                                        e: _mm256_shuffle_epi8(v, sp.e),
                                        o: _mm256_shuffle_epi8(v, sp.o),
                                    };
                                    *ah = dot(*ah, x, wv[h]);
                                }
                            }
                        }
                    }
                }
            }
            for (p, ap) in a.into_iter().enumerate() {
                end(p, o0, lanes.min(8), ap[0]);
                if lanes > 8 {
                    end(p, o0 + 8, lanes - 8, ap[1]);
                }
            }
            o0 += 16;
        }
    }
}

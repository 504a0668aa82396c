//! The AVX-512 VNNI direct convolution (grouped and small dense convolutions read in place,
//! no gathered patches): up to 8 pixels x 16 output channels per tile in zmm accumulators,
//! masked to the channels of a dense convolution's last vector. The pixel walk is
//! `pixel_tiles`, as for every SIMD direct kernel.

use super::requant::TileRequant;
use super::x86_64::{has_vnni_512, Avx512Requant};
use crate::direct_entry::{direct_kernels, TileOut};
use crate::signatures::DirectShape;
use std::arch::x86_64::*;

direct_kernels! {
    features: "avx2,avx512f,avx512bw,avx512vnni,avx512vl",
    simd: has_vnni_512(),
    /// AVX-512 VNNI twin of [`super::generic::direct_u8`]; the generic kernel for shapes outside
    /// [`DirectShape::supported`] or without AVX-512 VNNI.
    ///
    /// Tile: up to 8 pixels x 16 output channels in 8 zmm accumulators, one 64-byte weight load
    /// per tap and quad shared by the pixels. The input operand of each lane is its group's quad:
    /// one broadcast when a vector's 16 lanes are one group (a dense convolution's last vector
    /// masked to its outputs), else (groups of 4 or 8 channels) the 16 input bytes of the
    /// vector's groups, spread by `vpermd` so that each lane sees its own group.
    acc: direct_u8_vnni,
    /// AVX-512 VNNI twin of [`super::generic::direct_u8_requant`]: the tiles of
    /// [`direct_u8_vnni`], each requantized in registers (as in
    /// [`super::x86_64::dot_u8i8_requant_vnni`]) and stored as bytes.
    requant: direct_u8_requant_vnni,
    add: add_tile,
    constants: Avx512Requant,
}

/// Adds a tile's vector `a` to the accumulators at `d` of the lanes in mask `m`.
///
/// # Safety
/// AVX-512 F must be available; `d` must hold the accumulators of the lanes in `m`.
#[inline(always)]
unsafe fn add_tile(d: *mut i32, m: __mmask16, a: __m512i) {
    // SAFETY: the caller's preconditions; masked loads and stores.
    unsafe {
        let sum = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, d), a);
        _mm512_mask_storeu_epi32(d, m, sum);
    }
}

impl TileOut<Avx512Requant> {
    /// The outputs at byte `at` of channels `o0..` in mask `m` from accumulators `a`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL must be available; the channels in `m` (from `o0`) within the layer's
    /// biases and multipliers, their bytes from `at` within the outputs (and the residual
    /// inputs): loads and stores are masked to them.
    #[inline(always)]
    unsafe fn store(&self, at: usize, o0: usize, m: __mmask16, a: __m512i) {
        // SAFETY: the caller's preconditions.
        unsafe {
            let b = _mm512_maskz_loadu_epi32(m, self.bias.add(o0));
            let mv = _mm512_maskz_loadu_ps(m, self.mult.add(o0));
            let r = self
                .residual
                .map(|r| _mm_maskz_loadu_epi8(m, r.add(at).cast()));
            let y = self.q.apply(_mm512_add_epi32(a, b), mv, r);
            _mm_mask_storeu_epi8(self.out.add(at).cast(), m, y);
        }
    }
}

/// Runs the direct tiles over `pixels` pixels (8 at a time, then 4, 2, 1: `pixel_tiles`), handing each
/// pixel's accumulators for output channels `o0..o0 + 16` (lanes in mask `m`) to `end(pixel,
/// o0, m, acc)`.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `s` supported; `xp` must hold the windows of `pixels`
/// pixels, `w` the weights of `s`; `end` must be sound for every pixel and vector.
#[inline(always)]
unsafe fn direct_tiles(
    s: &DirectShape,
    xp: *const u8,
    pixels: usize,
    w: *const i8,
    end: &impl Fn(usize, usize, __mmask16, __m512i),
) {
    crate::signatures::pixel_tiles(pixels, 8, |p, n| {
        // SAFETY: pixels p..p + n read inside `xp` from offset p * stride * in_c (the
        // caller's bounds); `end` gets pixel indices from p.
        unsafe {
            let x = xp.add(p * s.stride * s.in_c);
            let end = |i: usize, o0: usize, m: __mmask16, a: __m512i| end(p + i, o0, m, a);
            match n {
                8 => direct_tile::<8>(s, x, w, &end),
                4 => direct_tile::<4>(s, x, w, &end),
                2 => direct_tile::<2>(s, x, w, &end),
                _ => direct_tile::<1>(s, x, w, &end),
            }
        }
    });
}

/// `P` pixels of [`direct_tiles`], each vector of 16 output channels ending in `end`.
///
/// # Safety
/// AVX-512 F/BW/VNNI must be available; `s` supported; `xp` must hold the windows of `P` pixels,
/// `w` the weights of `s`; `end` sound for pixels `0..P`.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni,avx512vl")]
unsafe fn direct_tile<const P: usize>(
    s: &DirectShape,
    xp: *const u8,
    w: *const i8,
    end: &impl Fn(usize, usize, __mmask16, __m512i),
) {
    let (in_c, out_c, k) = (s.in_c, s.out_c, s.kernel);
    let step = s.stride * in_c;
    let quads = s.cin / 4;
    // For groups of 4 or 8 (cin == cout): lane l takes dword (l / cout) * quads + q of the
    // vector's 16 input bytes (its group's quad q). Such groups have at most 2 quads.
    let spread: [__m512i; 2] = std::array::from_fn(|q| {
        let idx: [i32; 16] = std::array::from_fn(|l| ((l / s.cout.min(16)) * quads + q) as i32);
        // SAFETY: reads the 64 bytes of `idx`.
        unsafe { _mm512_loadu_si512(idx.as_ptr() as *const __m512i) }
    });
    // One group per vector: a broadcast of its quad serves every lane.
    let broadcast = s.cout.is_multiple_of(16) || s.cout == out_c;
    // SAFETY: every intrinsic and pointer below: the features are enabled here; reads stay
    // within the windows of the P pixels (tap offsets < (k - 1) * row + k * in_c, a group's
    // channels within in_c; the permute path only when 16 | out_c, so its 16 bytes end by
    // out_c <= in_c), weights within k * k * quads * out_c * 4 bytes and accumulators within
    // P * out_c (the masks leave out lanes at or beyond out_c).
    unsafe {
        let mut o0 = 0;
        while o0 < out_c {
            // Lanes of this vector that are output channels (fewer than 16 only in the last
            // vector of a dense convolution): masked loads and stores never touch the others.
            let lanes = (out_c - o0).min(16);
            let m: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
            let mut a = [_mm512_setzero_si512(); P];
            // This vector's block of weights (`DirectShape::weight_at`), `lanes` per quad.
            let wb = w.add(s.weight_at(0, 0, o0));
            for ky in 0..k {
                for kx in 0..k {
                    let off = ky * s.row + kx * in_c;
                    let tap = ky * k + kx;
                    for q in 0..quads {
                        let wv = _mm512_maskz_loadu_epi32(
                            m,
                            wb.add((tap * quads + q) * lanes * 4) as *const i32,
                        );
                        if broadcast {
                            let at = off + o0 / s.cout * s.cin + 4 * q;
                            for (p, ap) in a.iter_mut().enumerate() {
                                let v = (xp.add(p * step + at) as *const i32).read_unaligned();
                                *ap = _mm512_dpbusd_epi32(*ap, _mm512_set1_epi32(v), wv);
                            }
                        } else {
                            let at = off + o0;
                            for (p, ap) in a.iter_mut().enumerate() {
                                let v = _mm_loadu_si128(xp.add(p * step + at) as *const __m128i);
                                let x = _mm512_permutexvar_epi32(
                                    spread[q % 2],
                                    _mm512_zextsi128_si512(v),
                                );
                                *ap = _mm512_dpbusd_epi32(*ap, x, wv);
                            }
                        }
                    }
                }
            }
            for (p, ap) in a.into_iter().enumerate() {
                end(p, o0, m, ap);
            }
            o0 += 16;
        }
    }
}

//! The integer inner loop of the native convolution, in one generic definition and per-ISA
//! twins, behind one dispatch point.
//!
//! The operation: `acc[r][o] += sum_k patch[r][k] * w[k][o]` into i32, for a block of rows
//! (output pixels), `k` running over the convolution's depth (taps x input channels of a group).
//! Two families, each with its generic definition:
//! * **i16 pairs** ([`DotI16`]): the patch holds `x - zero_point` as i16, weights are packed as
//!   `[k / 2][n][2]` i16 per [`PANEL`] of outputs, one pair of inputs times a pair of weights
//!   per lane. Only the generic kernel (`RESNEXT_EDGE_KERNELS=generic-i16`) is of this family: a
//!   second, independent definition of the convolution.
//! * **u8 quads** ([`DotU8I8`]): the patch holds `x` as is (u8), weights `[k / 4][n][4]` i8 per
//!   panel, one quad per `vpdpbusd` lane (x86 VNNI; two `vpmaddwd` on AVX2, `smull`/`sdot` on
//!   ARM); the zero point's share, `zero_point * sum_k w[k][o]`, is taken out of the bias at
//!   load. Every SIMD kernel set is of this family.
//!
//! Integer accumulation is exact in any order, so every twin must equal its family's generic
//! kernel bit for bit, and both families give the same convolution; the property tests check
//! both on random shapes.
//!
//! `RESNEXT_EDGE_KERNELS=generic-i16` forces the generic path (any other kernel set's name forces
//! that one, for comparisons).
//!
//! What each kernel of a job takes is in [`signatures`]; the one dispatch table, the kernel
//! sets and the choice among them in [`dispatch`]; the definitions in [`generic`] and
//! [`requant`]; each ISA's twins in a module of its own. This file only lists the modules and
//! re-exports what the runtime uses, so that no module imports one that imports it back.
//!
//! Around the kernels, the crate holds the convolution engine that feeds them ([`conv`]:
//! geometry, weight packing, patches, requantization, the thread split), 64-byte aligned
//! buffers ([`aligned`]) and the worker threads ([`workers`]). It depends on no inference
//! engine: resnext-edge wraps it in tract ops, and its tests build and run alone on any target,
//! under qemu-user for ARM (`targets/kernel-tests.sh`).

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod aligned;
#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "arm")]
pub mod armv7;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx2_direct;
pub mod conv;
#[cfg(target_arch = "x86_64")]
mod direct_entry;
pub mod dispatch;
pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon_direct;
#[cfg(target_arch = "aarch64")]
pub mod neon_dot;
#[cfg(target_arch = "aarch64")]
pub mod neon_dot_direct;
#[cfg(target_arch = "aarch64")]
mod neon_sink;
pub mod nhwc;
#[cfg(test)]
mod proptest_seed;
pub mod requant;
pub mod signatures;
#[cfg(target_arch = "x86_64")]
pub mod vnni_direct;
#[cfg_attr(
    not(any(target_arch = "aarch64", target_arch = "arm")),
    allow(dead_code)
)]
mod weight_split;
pub mod workers;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use dispatch::{
    selected, set_threads, threads, Family, Isa, Kernel, KernelSet, Named, RequantRows,
};
pub use signatures::{
    panels, DirectShape, DirectU8, DirectU8Requant, DotI16, DotU8I8, DotU8Requant, MAX_ROWS, PANEL,
};

#[cfg(test)]
mod tests {
    //! Every kernel twin against its family's generic kernel, bit for bit, with guard values
    //! around the accumulators so that a write outside the tile shows up.
    use super::*;
    use proptest::prelude::*;

    /// An input byte: random, except every eighth case (by seed) half of them 0, the input
    /// whose `x - 128` times a -128 weight is the largest product, 16384 (with
    /// [`clash_weight`]: two such products in one i16 lane overflow it).
    fn clash_input(seed: u64, r: u64) -> u8 {
        if seed % 8 == 4 && r.is_multiple_of(2) {
            0
        } else {
            (r >> 1) as u8
        }
    }

    /// A weight: random, except every eighth case (the same as [`clash_input`]'s) half of them
    /// -128 (unless the test then raises its floor).
    fn clash_weight(seed: u64, r: u64) -> i8 {
        if seed % 8 == 4 && r.is_multiple_of(2) {
            i8::MIN
        } else {
            (r >> 1) as i8
        }
    }

    /// What a requantizing case's kernels may be told of its weights `w` (each channel's sums in
    /// the call's layout by `sums_of`; [`requant::WeightSums`]), and its biases ([`biases`]).
    struct WeightFacts {
        sums: Vec<i32>,
        has_min: bool,
        narrow: bool,
        bias: Vec<i32>,
    }

    impl WeightFacts {
        fn of(
            seed: u64,
            w: &[i8],
            sums_of: impl Fn(&[i8]) -> Vec<i32>,
            next: &mut impl FnMut() -> u64,
        ) -> Self {
            let part = |f: fn(i8) -> i8| sums_of(&w.iter().map(|&v| f(v)).collect::<Vec<_>>());
            let (pos, neg) = (part(|v| v.max(0)), part(|v| v.min(0)));
            let bias = biases(seed, &pos, next);
            WeightFacts {
                sums: sums_of(w),
                has_min: w.contains(&i8::MIN),
                narrow: narrow(&pos, &neg, &bias),
                bias,
            }
        }

        /// The weight sums as the call gets them: in two cases of three (a packed layer has
        /// them).
        fn given(&self, seed: u64) -> Option<requant::WeightSums<'_>> {
            (!seed.is_multiple_of(3)).then_some(requant::WeightSums {
                sums: &self.sums,
                has_min: self.has_min,
                narrow: self.narrow,
            })
        }
    }

    /// `n` multipliers as a quantizer makes them, some large enough to saturate, and (in half
    /// the cases, by seed) now and then the values no quantizer writes: NaN, infinities (the
    /// other half takes the kernels' NaN-free rounding); zero now and then. With [`biases`] up
    /// to 2^24, scales that keep those within the bytes.
    fn multipliers(seed: u64, n: usize, next: &mut impl FnMut() -> u64) -> Vec<f32> {
        let special = (seed >> 3).is_multiple_of(2);
        let mut one = || match next() % 64 {
            0 if special => f32::NAN,
            1 if special => f32::INFINITY,
            2 if special => f32::NEG_INFINITY,
            3 => 0.0,
            k if seed % 4 == 3 => (k as f32 - 32.0) * 2f32.powi(-22),
            k => (k as f32 - 32.0) * 1e-5 * (1 + next() % 1000) as f32,
        };
        (0..n).map(|_| one()).collect()
    }

    /// The biases of a requantizing case whose channels' positive weights sum to `pos`: small
    /// ones, except every fourth case up to +-2^24 (accumulators past +-2^22, which a kernel
    /// that turns them into f32 by adding bits must not take) and every fourth at the top of
    /// the range it may take (`2^22 - 1` for inputs of 255 on the positive weights).
    fn biases(seed: u64, pos: &[i32], next: &mut impl FnMut() -> u64) -> Vec<i32> {
        let bias = |&p: &i32| match seed % 4 {
            3 => (next() % (1 << 25)) as i32 - (1 << 24),
            2 => (1 << 22) - 1 - 255 * p,
            _ => next() as i32 >> 12,
        };
        pos.iter().map(bias).collect()
    }

    /// Whether every channel keeps its accumulator within +-2^22
    /// ([`requant::narrow_accumulator`]), from the sums of its positive and negative weights.
    fn narrow(pos: &[i32], neg: &[i32], bias: &[i32]) -> bool {
        let channel = |((&p, &n), &b): ((&i32, &i32), &i32)| {
            requant::narrow_accumulator(p as i64, n as i64, b)
        };
        pos.iter().zip(neg).zip(bias).all(channel)
    }

    /// A reproducible stream of pseudo-random words from a proptest seed.
    pub(super) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// The dispatch table: every SIMD set has direct kernels and kernels that requantize their
    /// own tiles (armv7's requantize in a pass of their own), of its own ISA; the AVX-VNNI set
    /// takes the AVX2 set's, as it has no 512-bit vectors.
    #[test]
    fn every_simd_set_has_direct_and_requantizing_kernels_of_its_isa() {
        for isa in Isa::available() {
            let set = isa.kernels();
            assert_eq!(set.isa, isa);
            let suffix = match isa {
                Isa::GenericI16 | Isa::GenericU8 | Isa::Armv7Neon => continue,
                Isa::Avx2 | Isa::AvxVnni => "_avx2",
                Isa::Vnni | Isa::Amx => "_vnni",
                Isa::NeonI8 => "_neon",
                Isa::NeonDot => "_sdot",
            };
            let (direct, direct_requant, dot_requant) = (
                set.direct.expect("direct"),
                set.direct_requant.expect("direct_requant"),
                set.dot_requant.expect("dot_requant"),
            );
            assert!(
                direct.name.ends_with(suffix),
                "{}: {}",
                isa.name(),
                direct.name
            );
            assert!(
                direct_requant.name.ends_with(suffix),
                "{}",
                direct_requant.name
            );
            let amx = isa == Isa::Amx && dot_requant.name.ends_with("_amx");
            assert!(
                dot_requant.name.ends_with(suffix) || amx,
                "{}",
                dot_requant.name
            );
        }
    }

    /// The corners of the input ranges, where pairing products in 16 bits could overflow:
    /// `x = 0` (`x - 128 = -128`) against `w = -128` is 16384 per product.
    #[test]
    fn extreme_values_equal_the_generic_kernel() {
        // depth_bytes = 12: three quads, so the odd last one is taken alone.
        for (rows, depth_bytes, n, x, wv) in [0u8, 255].into_iter().flat_map(|x| {
            [-128i8, -127, 127]
                .into_iter()
                .flat_map(move |wv| [(5, 16, 12, x, wv), (5, 12, 12, x, wv)])
        }) {
            {
                let patch = vec![x; rows * depth_bytes];
                let w = vec![wv; depth_bytes * n];
                let mut want = vec![0; rows * n];
                generic::dot_u8i8(rows, &patch, depth_bytes, &w, n, &mut want);
                for isa in Isa::available() {
                    if let Kernel::U8(dot) = isa.kernels().dot.f {
                        let mut got = vec![0; rows * n];
                        dot(rows, &patch, depth_bytes, &w, n, &mut got);
                        assert_eq!(got, want, "{} with x = {x}, w = {wv}", isa.name());
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_seed::config(128))]

        #[test]
        fn u8_twins_equal_the_generic_kernel(
            rows in 1usize..=13,
            quads in 1usize..=200,
            n in 1usize..=72, // up to two weight panels and a narrower third
            seed in any::<u64>(),
        ) {
            let depth_bytes = 4 * quads;
            let mut next = xorshift(seed);
            let patch: Vec<u8> = (0..rows * depth_bytes).map(|_| clash_input(seed, next())).collect();
            // Weights as the quantizer writes them, [-127, 127]; every fourth case the full
            // i8 range (ONNX allows -128; kernels that pair products must notice).
            let floor = if seed % 4 == 0 { -128 } else { -127 };
            let w: Vec<i8> = (0..depth_bytes * n).map(|_| clash_weight(seed, next()).max(floor)).collect();
            let guard = 3;
            let start: Vec<i32> = (0..rows * n + 2 * guard).map(|_| next() as i32 >> 8).collect();
            let mut want = start.clone();
            generic::dot_u8i8(rows, &patch, depth_bytes, &w, n, &mut want[guard..guard + rows * n]);
            for isa in Isa::available() {
                if let Kernel::U8(dot) = isa.kernels().dot.f {
                    let mut got = start.clone();
                    dot(rows, &patch, depth_bytes, &w, n, &mut got[guard..guard + rows * n]);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }

        #[test]
        fn requantizing_twins_equal_the_generic_kernel(
            rows in 1usize..=13,
            quads in 0usize..=160,
            panels in 1usize..=3,
            // Outputs short of whole panels (kernels that take them: vectors and a tail).
            short in prop::sample::select(vec![0usize, 0, 0, 4, 13]),
            gap in 0usize..=5,
            residual in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let (depth_bytes, n) = (4 * quads, PANEL * panels - short);
            let ldo = n + gap;
            let mut next = xorshift(seed);
            let patch: Vec<u8> = (0..rows * depth_bytes).map(|_| clash_input(seed, next())).collect();
            let floor = if seed % 4 == 0 { -128 } else { -127 };
            let w: Vec<i8> = (0..depth_bytes * n).map(|_| clash_weight(seed, next()).max(floor)).collect();
            let facts = WeightFacts::of(seed, &w, |w| signatures::dot_weight_sums(depth_bytes, w, n), &mut next);
            let (bias, weight_sums) = (&facts.bias, facts.given(seed));
            let multiplier = multipliers(seed, n, &mut next);
            // Zero points and bounds are bytes in a model; every eighth case far outside
            // them (the kernels' general path).
            let wide = |v: u64| if seed % 8 == 0 { (v % (1 << 21)) as i32 - (1 << 20) } else { v as u8 as i32 };
            let (a, b) = (wide(next()), wide(next()));
            // And every eighth a zero point far outside with byte bounds (a kernel that
            // narrows with saturation before the zero point must not take it).
            let zero = if seed % 8 == 1 { (next() % (1 << 21)) as i32 - (1 << 20) } else { wide(next()) };
            let rq_residual =
                residual.then(|| (next() as u8 as i32, (next() % 1000) as f32 * 1e-3));
            let rq = requant::TileRequant {
                bias,
                multiplier: &multiplier,
                zero,
                lo: a.min(b),
                hi: a.max(b),
                residual: rq_residual,
                weight_sums,
                nan_free: requant::TileRequant::nan_free_multipliers(&multiplier, rq_residual),
            };
            let len = (rows - 1) * ldo + n;
            let res: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Now and then the call's residual inputs and the requantization's residual
            // disagree (the definition adds the term only when both are there).
            let res = (residual != (seed % 16 == 5)).then_some(&res[..]);
            // Canary bytes in the gaps between rows and after the last one.
            let canary = 0xA5u8;
            let mut want = vec![canary; len + 3];
            generic::dot_u8i8_requant(rows, &patch, depth_bytes, &w, n, &rq, res, &mut want[..len], ldo);
            for isa in Isa::available() {
                if let Some(fused) = isa.kernels().dot_requant_for(n).map(|k| k.f) {
                    let mut got = vec![canary; len + 3];
                    fused(rows, &patch, depth_bytes, &w, n, &rq, res, &mut got[..len], ldo);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }

        #[test]
        fn requantizing_direct_twins_equal_the_generic_kernel(
            (cin, cout) in prop::sample::select(vec![
                (4usize, 4usize), (8, 8), (16, 16), (32, 32), (4, 16), (12, 16),
            ]),
            vectors in 1usize..=3,
            dense in prop::sample::select(vec![0usize, 0, 8, 20, 24, 64]),
            kernel in 1usize..=3,
            stride in 1usize..=2,
            pixels in 1usize..=19,
            residual in any::<bool>(),
            // Input pixels with channels no group reads, rows longer than the windows need.
            (extra_channels, extra_row) in (0usize..=2, 0usize..=3),
            seed in any::<u64>(),
        ) {
            let (cout, out_c) = match dense {
                0 => (cout, (16 * vectors).div_ceil(cout) * cout),
                n => (n, n),
            };
            let in_c = out_c / cout * cin + extra_channels;
            let row = (stride * (pixels - 1) + kernel + extra_row) * in_c;
            let s = DirectShape { in_c, out_c, cin, cout, kernel, stride, row };
            let mut next = xorshift(seed);
            let xp: Vec<u8> = (0..kernel * row).map(|_| clash_input(seed, next())).collect();
            let w: Vec<i8> = (0..s.weights().unwrap()).map(|_| clash_weight(seed, next())).collect();
            let facts = WeightFacts::of(seed, &w, |w| s.weight_sums(w), &mut next);
            let (bias, weight_sums) = (&facts.bias, facts.given(seed));
            let multiplier = multipliers(seed, out_c, &mut next);
            let (a, b) = (next() as u8 as i32, next() as u8 as i32);
            let rq_residual =
                residual.then(|| (next() as u8 as i32, (next() % 1000) as f32 * 1e-3));
            let rq = requant::TileRequant {
                bias,
                multiplier: &multiplier,
                zero: next() as u8 as i32,
                lo: a.min(b),
                hi: a.max(b),
                residual: rq_residual,
                weight_sums,
                nan_free: requant::TileRequant::nan_free_multipliers(&multiplier, rq_residual),
            };
            let len = pixels * out_c;
            let res: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let res = (residual != (seed % 16 == 5)).then_some(&res[..]);
            let canary = 0x5Au8;
            let mut want = vec![canary; len + 3];
            generic::direct_u8_requant(&s, &xp, pixels, &w, &rq, res, &mut want[..len]);
            for isa in Isa::available() {
                if let Some(fused) = isa.kernels().direct_requant.map(|k| k.f) {
                    let mut got = vec![canary; len + 3];
                    fused(&s, &xp, pixels, &w, &rq, res, &mut got[..len]);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }

        #[test]
        fn direct_twins_equal_the_generic_kernel(
            (cin, cout) in prop::sample::select(vec![
                (4usize, 4usize), (8, 8), (12, 12), (16, 16), (32, 32), (4, 16), (4, 64), (8, 32),
                (12, 16), (4, 8),
            ]),
            vectors in 1usize..=4,
            // Non-zero: a dense convolution of that many outputs (the last vector masked).
            dense in prop::sample::select(vec![0usize, 0, 0, 4, 8, 20, 24, 40, 64]),
            kernel in 1usize..=3,
            stride in 1usize..=2,
            pixels in 1usize..=19,
            extra_channels in 0usize..=2,
            extra_row in 0usize..=5,
            seed in any::<u64>(),
        ) {
            // Output channels: whole 16-lane vectors and whole groups, or one group; input pixels
            // may carry more channels than the groups read.
            let (cout, out_c) = match dense {
                0 => (cout, (16 * vectors).div_ceil(cout) * cout),
                n => (n, n),
            };
            let in_c = out_c / cout * cin + extra_channels;
            let row = (stride * (pixels - 1) + kernel + extra_row) * in_c;
            let s = DirectShape { in_c, out_c, cin, cout, kernel, stride, row };
            let mut next = xorshift(seed);
            let xp: Vec<u8> = (0..kernel * row).map(|_| clash_input(seed, next())).collect();
            let floor = if seed % 4 == 0 { -128 } else { -127 };
            let w: Vec<i8> =
                (0..s.weights().unwrap()).map(|_| clash_weight(seed, next()).max(floor)).collect();
            let guard = 3;
            let start: Vec<i32> =
                (0..pixels * out_c + 2 * guard).map(|_| next() as i32 >> 8).collect();
            let mut want = start.clone();
            generic::direct_u8(&s, &xp, pixels, &w, &mut want[guard..guard + pixels * out_c]);
            for isa in Isa::available() {
                if let Some(direct) = isa.kernels().direct.map(|k| k.f) {
                    let mut got = start.clone();
                    direct(&s, &xp, pixels, &w, &mut got[guard..guard + pixels * out_c]);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }
    }

    #[test]
    fn pixel_tiles_cover_each_pixel_once_largest_first() {
        for max in [1, 2, 4, 8] {
            for pixels in 0..40 {
                let mut seen = Vec::new();
                crate::signatures::pixel_tiles(pixels, max, |p, n| seen.push((p, n)));
                let mut next = 0;
                for &(p, n) in &seen {
                    assert_eq!(p, next, "max {max}, pixels {pixels}: {seen:?}");
                    assert!(n.is_power_of_two() && n <= max);
                    // The largest tile that fits: twice it would not.
                    assert!(n == max || 2 * n > pixels - p, "{seen:?}");
                    next += n;
                }
                assert_eq!(next, pixels);
            }
        }
    }
}

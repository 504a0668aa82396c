//! The requantization that ends every native convolution: an output channel's i32 accumulator
//! (bias included) becomes a u8 output. One definition ([`requantize`]) for the pass that
//! reads accumulators back from memory and for the kernels that requantize their tiles in
//! registers ([`crate::signatures::DotU8Requant`]).
//!
//! `v = acc as f32 * multiplier`, plus `(residual - residual_zero) as f32 * residual_multiplier`
//! when there is a residual input, then `round_half_even(v) + zero` clamped to `[lo, hi]`
//! (`lo = zero` is a fused ReLU). Plain f32 multiplies and adds in this order (no fused
//! multiply-add), so that every ISA computes the same bits.
//!
//! One name per role: [`requantize`] is the definition for one value; a convolution layer owns
//! its parameters as a [`crate::conv::LayerRequant`]; a kernel gets those of the channels it
//! writes as a [`TileRequant`]; the SIMD kernels hold a `TileRequant`'s constants in
//! registers as `NeonRequant`, `Avx2Requant` or `Avx512Requant`.

/// `x.round_ties_even() as i32` for the values a requantization can keep (anything beyond
/// +-2^22 saturates anyway): with `x` clamped to that range, adding and subtracting 1.5 * 2^23
/// leaves the nearest integer, ties to even, in plain f32 arithmetic that every ISA (and its
/// vector unit) computes identically, where `roundf`-style calls are slow on baseline x86_64.
/// NaN gives 0.
#[inline(always)]
pub fn round_half_even(x: f32) -> i32 {
    let x = x.clamp(-LIMIT, LIMIT);
    let r = (x + MAGIC) - MAGIC;
    if r.is_nan() {
        return 0;
    }
    // SAFETY: `r` is an integer-valued, finite f32 within +-2^22 (clamped above, NaN excluded),
    // which i32 represents exactly.
    unsafe { r.to_int_unchecked::<i32>() }
}

/// 1.5 * 2^23: added and taken away, it rounds an f32 below 2^22 to an integer.
pub const MAGIC: f32 = 12_582_912.0;
/// 2^22: the clamp before [`MAGIC`].
pub const LIMIT: f32 = 4_194_304.0;

/// The output of accumulator `acc` with multiplier `m`, and the residual input `(r, zero,
/// multiplier)` if there is one.
#[inline(always)]
pub fn requantize(
    acc: i32,
    m: f32,
    residual: Option<(u8, i32, f32)>,
    (zero, lo, hi): (i32, i32, i32),
) -> u8 {
    let mut v = acc as f32 * m;
    if let Some((r, rz, rm)) = residual {
        v += (r as i32 - rz) as f32 * rm;
    }
    (round_half_even(v) + zero).clamp(lo, hi) as u8
}

/// What turns the accumulators of `n` output channels into u8 outputs: per channel the bias
/// (added to the sum of products) and the multiplier, the output zero point and clamp bounds,
/// and the residual input's zero point and multiplier when there is one.
#[derive(Clone, Copy, Debug)]
pub struct TileRequant<'a> {
    pub bias: &'a [i32],
    pub multiplier: &'a [f32],
    pub zero: i32,
    pub lo: i32,
    pub hi: i32,
    pub residual: Option<(i32, f32)>,
    /// What the caller knows of the call's weights, if anything (a packed layer computes it
    /// once). Not part of the definition: given, it must be true of the call's weights, and
    /// then the outputs are the same as without it (wrong, they are unspecified, though no
    /// kernel reads or writes outside its buffers).
    pub weight_sums: Option<WeightSums<'a>>,
    /// True only if no f32 value of the definition is NaN: every multiplier, and the
    /// residual's, finite and at most 2^64 in magnitude ([`TileRequant::nan_free_multipliers`]).
    /// Then the kernels may round without a NaN case. False is always allowed.
    pub nan_free: bool,
}

/// Each channel's sum of weights, exactly as a call's weights hold them, and `has_min`, false
/// only if no weight of the call is -128: the kernels that take `x - 128` for their u8 inputs
/// add back `128` times the sum instead of summing the weights at every call, and (without a
/// -128) pair products in i16 without looking for the pairs that could overflow. `narrow`,
/// true only if every accumulator of the call (its u8 inputs' products with its weights, plus
/// its bias) lies within +-2^22 whatever the inputs ([`narrow_accumulator`] of every channel):
/// then a kernel may turn them into f32 by adding bits, not by `scvtf`.
#[derive(Clone, Copy, Debug)]
pub struct WeightSums<'a> {
    pub sums: &'a [i32],
    pub has_min: bool,
    pub narrow: bool,
}

/// Whether an output channel whose weights sum to `pos` over the positive ones and `neg` over
/// the negative ones, with `bias`, keeps its accumulator within +-2^22 for any u8 inputs
/// (`255 * neg + bias` to `255 * pos + bias`).
pub fn narrow_accumulator(pos: i64, neg: i64, bias: i32) -> bool {
    const BOUND: i64 = 1 << 22;
    let bias = i64::from(bias);
    -BOUND < 255 * neg + bias && 255 * pos + bias < BOUND
}

/// A layer's [`WeightSums`], owned: every output channel's.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeightSums {
    pub sums: Vec<i32>,
    pub has_min: bool,
    pub narrow: bool,
}

impl LayerWeightSums {
    /// Those of output `channels`.
    pub fn of(&self, channels: std::ops::Range<usize>) -> WeightSums<'_> {
        WeightSums {
            sums: &self.sums[channels],
            has_min: self.has_min,
            narrow: self.narrow,
        }
    }
}

impl TileRequant<'_> {
    /// Whether multipliers `m` and the residual's make [`TileRequant::nan_free`] true: with
    /// each at most 2^64 in magnitude, a product with an i32 is at most 2^96 and the sum of two
    /// such is finite, where an infinity or NaN multiplier could make NaN (`inf * 0`, `inf -
    /// inf`).
    pub fn nan_free_multipliers(m: &[f32], residual: Option<(i32, f32)>) -> bool {
        const BOUND: f32 = 18_446_744_073_709_551_616.0; // 2^64
        let tame = |m: f32| m.abs() <= BOUND;
        // (A fold rather than `all`: no early exit, so that it vectorizes.)
        m.iter().fold(true, |ok, &m| ok & tame(m)) && residual.is_none_or(|(_, rm)| tame(rm))
    }

    /// Output channel `o` of accumulator `acc` (bias not yet added), with the residual input's
    /// value `r` (used only when there is a residual).
    #[inline(always)]
    pub fn output(&self, o: usize, acc: i32, r: Option<u8>) -> u8 {
        let residual = self.residual.zip(r).map(|((rz, rm), r)| (r, rz, rm));
        requantize(
            acc.wrapping_add(self.bias[o]),
            self.multiplier[o],
            residual,
            (self.zero, self.lo, self.hi),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_even_matches_the_standard_library() {
        for v in [
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.5,
            0.49999997,
            3.7,
            -3.7,
            1e6 + 0.5,
            4e6,
            -4e6,
        ] {
            let want = v.round_ties_even() as i32;
            assert_eq!(round_half_even(v), want, "{v}");
        }
        assert_eq!(round_half_even(1e30), LIMIT as i32);
        assert_eq!(round_half_even(-1e30), -(LIMIT as i32));
        assert_eq!(round_half_even(f32::NAN), 0);
    }
}

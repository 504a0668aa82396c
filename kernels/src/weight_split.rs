//! The -128 rule of the ARM kernels that multiply `x - 128` by the weights into i16 lanes
//! (`smull` / `smlal` on aarch64, `vmull` / `vmlal` on armv7), in one place.
//!
//! A product of `x - 128` (x a u8 input) and an i8 weight lies in [-16256, 16384], the top only
//! for a -128 weight and an input of 0, so two products added in one i16 lane (the paired steps
//! of those kernels) overflow only when both weights are -128. Kernels that meet such a pair run
//! their tile twice, on two copies of the weights that sum to them and hold no -128
//! ([`split_weights`]), and add the two sums. Every kernel adds `128 * sum w` back to its
//! outputs, what the `- 128` of the inputs took away. Our quantizer writes weights in
//! [-127, 127]; onnxruntime's symmetric [-128, 127] range does write -128 here and there.

/// One weight as two that sum to it, neither -128: -128 is -64 twice, any other weight is
/// itself and 0.
#[inline(always)]
pub(crate) fn split_weight(w: i8) -> (i8, i8) {
    if w == i8::MIN {
        (-64, -64)
    } else {
        (w, 0)
    }
}

/// [`split_weight`] of each of `weights`, into `most` and `rest` (both as long as `weights`).
#[inline]
pub(crate) fn split_weights(weights: &[i8], most: &mut [i8], rest: &mut [i8]) {
    assert!(most.len() == weights.len() && rest.len() == weights.len());
    for ((m, r), &w) in most.iter_mut().zip(rest.iter_mut()).zip(weights) {
        (*m, *r) = split_weight(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copies_sum_to_each_weight_and_hold_no_minus_128() {
        for w in i8::MIN..=i8::MAX {
            let (m, r) = split_weight(w);
            assert_eq!(m as i32 + r as i32, w as i32);
            assert!(m != i8::MIN && r != i8::MIN);
            // Two products of either copy and any `x - 128` fit an i16.
            for c in [m, r] {
                assert!(2 * (c as i32 * -128).abs() <= i16::MAX as i32 + 1, "{w}");
            }
        }
        let weights: Vec<i8> = (i8::MIN..=i8::MAX).collect();
        let (mut most, mut rest) = (vec![0; 256], vec![0; 256]);
        split_weights(&weights, &mut most, &mut rest);
        for ((w, m), r) in weights.iter().zip(&most).zip(&rest) {
            assert_eq!((*m, *r), split_weight(*w));
        }
    }
}

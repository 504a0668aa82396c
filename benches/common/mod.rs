//! What the convolution benches share: deterministic operands for a convolution shape.

use resnext_edge::kernels::conv::{ConvGeometry, LayerRequant};

/// `n` bytes of a multiplicative hash of their index: varied, the same in every run.
pub fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

/// Weights (in [-127, 127], as our quantizer writes them), biases, an input and a
/// requantization for `geom`.
pub fn operands(geom: &ConvGeometry) -> (Vec<i8>, Vec<i32>, Vec<u8>, LayerRequant) {
    let (cout, k) = (geom.out_c, geom.kernel);
    let w: Vec<i8> = bytes(cout * (geom.in_c / geom.groups) * k * k, 1)
        .iter()
        .map(|&b| (b as i8).max(-127))
        .collect();
    let bias: Vec<i32> = bytes(cout, 2).iter().map(|&b| b as i32 * 10).collect();
    let x = bytes(geom.in_h * geom.in_w * geom.in_c, 3);
    let requant = LayerRequant::new(3, vec![0.02 * 0.01 / 0.05; cout], 0, (0, 255), None);
    (w, bias, x, requant)
}

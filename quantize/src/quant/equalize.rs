//! Activation equalization across the ReLU inside each bottleneck (a form of cross-layer
//! equalization). A ReLU commutes with a positive per-channel scale, so channel `c` of the
//! activation between two convolutions can be multiplied by `1 / s_c` (conv before: row `c` and
//! bias divided by `s_c`) and the next conv's input column `c` multiplied by `s_c`, with the
//! float network unchanged. With one quantization grid per tensor, channels whose range is far
//! below the tensor's maximum get only a few levels; `s_c = sqrt(r_c / R)` (`r_c` the channel's
//! calibrated maximum, `R` the tensor's) spreads them over more levels, while keeping the next
//! conv's weights (quantized per output row) from shrinking by more than the same square root.
//!
//! Measured on the trained example model (`scripts/fidelity.sh` settings): no gain, because the
//! per-channel int8 weights cost nothing there (23.89 dB with float weights, 23.94 dB with int8)
//! and the activation noise is spread over every layer rather than concentrated in a few
//! narrow channels; the logit SQNR moved from 23.94 to 23.82 dB (minmax) and from 23.68 to
//! 23.59 dB (mse), with exponents 1/4, 1/2 and 1 alike. Hence off by default (`--equalize`).

use crate::float_net::{FloatNet, FoldedConv};
use std::collections::HashMap;

/// Lower bound of a scale: a channel that never activates is left as it is.
const MIN_SCALE: f32 = 1e-2;

/// Rescales the `conv1 → conv2` and `conv2 → conv3` pairs of every block, from the per-channel
/// maxima of `{block}.conv1.relu` and `{block}.conv2.relu`.
pub fn equalize(net: &mut FloatNet, channel_max: &HashMap<String, Vec<f32>>) {
    for b in &mut net.blocks {
        for (act, first_is_conv1) in [
            (format!("{}.conv1.relu", b.name), true),
            (format!("{}.conv2.relu", b.name), false),
        ] {
            let Some(r) = channel_max.get(&act) else {
                continue;
            };
            let big = r.iter().fold(0f32, |m, &v| m.max(v));
            if big <= 0.0 {
                continue;
            }
            let s: Vec<f32> = r
                .iter()
                .map(|&v| {
                    if v > 0.0 {
                        (v / big).sqrt().max(MIN_SCALE)
                    } else {
                        1.0
                    }
                })
                .collect();
            let (before, after) = if first_is_conv1 {
                (&mut b.conv1, &mut b.conv2)
            } else {
                (&mut b.conv2, &mut b.conv3)
            };
            scale_outputs(before, &s);
            scale_inputs(after, &s);
        }
    }
}

/// Output channel `c` divided by `s[c]`.
fn scale_outputs(conv: &mut FoldedConv, s: &[f32]) {
    let per = conv.weight.len() / conv.shape.out_channels;
    for (c, &sc) in s.iter().enumerate() {
        conv.weight[c * per..(c + 1) * per]
            .iter_mut()
            .for_each(|w| *w /= sc);
        conv.bias[c] /= sc;
    }
}

/// Input channel `c` multiplied by `s[c]` (grouped convolutions included).
fn scale_inputs(conv: &mut FoldedConv, s: &[f32]) {
    let sh = &conv.shape;
    let in_per_group = sh.in_channels / sh.groups;
    let out_per_group = sh.out_channels / sh.groups;
    let k2 = sh.kernel * sh.kernel;
    for o in 0..sh.out_channels {
        let g = o / out_per_group;
        for ci in 0..in_per_group {
            let sc = s[g * in_per_group + ci];
            let base = (o * in_per_group + ci) * k2;
            conv.weight[base..base + k2]
                .iter_mut()
                .for_each(|w| *w *= sc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resnext_edge::resnext::ConvShape;

    fn conv(i: usize, o: usize, g: usize, seed: f32) -> FoldedConv {
        let shape = ConvShape {
            name: "c".into(),
            bn: "b".into(),
            in_channels: i,
            out_channels: o,
            kernel: 1,
            stride: 1,
            padding: 0,
            groups: g,
            in_size: 1,
            out_size: 1,
        };
        let n = o * i / g;
        FoldedConv {
            shape,
            weight: (0..n).map(|k| ((k as f32 + seed) * 0.37).sin()).collect(),
            bias: (0..o).map(|k| k as f32 * 0.1 - 0.2).collect(),
        }
    }

    /// conv → ReLU → grouped conv on one pixel.
    fn forward(a: &FoldedConv, b: &FoldedConv, x: &[f32]) -> Vec<f32> {
        let mid: Vec<f32> = (0..a.shape.out_channels)
            .map(|o| {
                (a.bias[o]
                    + (0..x.len())
                        .map(|i| a.weight[o * x.len() + i] * x[i])
                        .sum::<f32>())
                .max(0.0)
            })
            .collect();
        let ipg = b.shape.in_channels / b.shape.groups;
        let opg = b.shape.out_channels / b.shape.groups;
        (0..b.shape.out_channels)
            .map(|o| {
                b.bias[o]
                    + (0..ipg)
                        .map(|ci| b.weight[o * ipg + ci] * mid[(o / opg) * ipg + ci])
                        .sum::<f32>()
            })
            .collect()
    }

    #[test]
    fn the_float_function_is_unchanged() {
        let (mut a, mut b) = (conv(3, 8, 1, 0.0), conv(8, 8, 4, 1.0));
        let x = [0.3, -1.2, 2.0];
        let before = forward(&a, &b, &x);
        let s = [0.5, 1.0, 0.1, 0.9, 0.25, 1.0, 0.7, 0.3];
        scale_outputs(&mut a, &s);
        scale_inputs(&mut b, &s);
        let after = forward(&a, &b, &x);
        for (p, q) in before.iter().zip(&after) {
            assert!((p - q).abs() < 1e-5, "{before:?} vs {after:?}");
        }
    }
}

//! Quantization parameters and the arithmetic that makes them: activations per tensor (u8 or
//! s8, asymmetric), weights per output channel (int8, symmetric), biases int32 at
//! `input_scale * weight_scale`. Rounding is half to even everywhere, as numpy and onnxruntime
//! round.

use serde::{Deserialize, Serialize};

/// Element type of quantized activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ActType {
    U8,
    S8,
}

impl ActType {
    pub fn name(self) -> &'static str {
        match self {
            ActType::U8 => "u8",
            ActType::S8 => "s8",
        }
    }

    /// Smallest quantized value.
    pub fn qmin(self) -> i32 {
        match self {
            ActType::U8 => 0,
            ActType::S8 => -128,
        }
    }
}

/// `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QParams {
    /// Parameters covering `[lo, hi]` (widened to include 0, so that zero is exact) with the 256
    /// levels of `ty`.
    pub fn for_range(lo: f32, hi: f32, ty: ActType) -> Self {
        let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
        let scale = if hi - lo > 0.0 {
            (hi - lo) / 255.0
        } else {
            1.0
        };
        let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32 + ty.qmin();
        QParams {
            scale: scale as f32,
            zero_point: zp,
        }
    }

    pub fn quantize(&self, x: f32, ty: ActType) -> i32 {
        ((x / self.scale).round_ties_even() as i32 + self.zero_point)
            .clamp(ty.qmin(), ty.qmin() + 255)
    }

    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }
}

/// Weights quantized per output channel: `w ≈ scale[o] * q`.
#[derive(Clone, Debug, PartialEq)]
pub struct QWeights {
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Symmetric int8 per output channel (`[-127, 127]`, so that the negation of any weight is
/// representable): `scale[o] = max |w[o]| / 127`.
pub fn quantize_weights(w: &[f32], out_channels: usize) -> QWeights {
    let per = w.len() / out_channels;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out_channels);
    for row in w.chunks_exact(per) {
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if absmax > 0.0 { absmax / 127.0 } else { 1.0 };
        q.extend(
            row.iter()
                .map(|&v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    QWeights { q, scales }
}

/// Bias as int32 at `input_scale * weight_scale[o]`; returns the values and their scales.
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    b.iter()
        .zip(weight_scales)
        .map(|(&v, &ws)| {
            let s = input_scale * ws;
            (
                (v as f64 / s as f64)
                    .round_ties_even()
                    .clamp(i32::MIN as f64, i32::MAX as f64) as i32,
                s,
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_exact_and_the_range_is_covered() {
        for ty in [ActType::U8, ActType::S8] {
            let p = QParams::for_range(-1.0, 3.0, ty);
            assert_eq!(p.dequantize(p.quantize(0.0, ty)), 0.0);
            assert!((p.dequantize(p.quantize(3.0, ty)) - 3.0).abs() <= p.scale);
            assert!((p.dequantize(p.quantize(-1.0, ty)) + 1.0).abs() <= p.scale);
        }
        let relu = QParams::for_range(0.0, 2.55, ActType::U8);
        assert_eq!(relu.zero_point, 0);
        assert_eq!(QParams::for_range(0.0, 2.55, ActType::S8).zero_point, -128);
    }

    #[test]
    fn weights_use_the_symmetric_range_per_channel() {
        let w = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0, -2.0];
        let q = quantize_weights(&w, 3);
        assert_eq!(q.q[..3], [64, -127, 32]);
        assert_eq!(q.q[3..6], [0, 0, 0]);
        assert_eq!(q.scales[1], 1.0);
        assert_eq!(q.q[6..], [127, 64, -127]);
        let (b, s) = quantize_bias(&[1.0, -0.5], 0.5, &[0.25, 1.0]);
        assert_eq!(b, vec![8, -1]);
        assert_eq!(s, vec![0.125, 0.5]);
    }
}

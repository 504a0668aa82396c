//! Deterministic random weights for any config, for benchmarks and tests of the full-size presets
//! when no checkpoint is at hand. The weights go through the same checkpoint path as real ones
//! (torchvision names, BN folding), with realistic scales: He-normal convolutions, BN statistics
//! near unit, residual branches damped as in trained networks, so activations neither vanish nor
//! explode over 50 blocks and the int8 path sees the ranges it would in a trained model.

use crate::checkpoint::{Checkpoint, Container, KeyLayout, Tensor};
use crate::infer::expected_tensors;
use resnext_edge::resnext::ResNeXtConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// SplitMix64: a small, well-mixed generator; the same seed gives the same weights everywhere.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A checkpoint of random weights for `config`, named as torchvision names them.
pub fn random_checkpoint(config: &ResNeXtConfig, seed: u64) -> Checkpoint {
    let mut rng = SplitMix64::new(seed);
    let mut tensors = BTreeMap::new();
    for (key, shape) in expected_tensors(config) {
        let n: usize = shape.iter().product();
        let mut fill = |f: &mut dyn FnMut(&mut SplitMix64) -> f64| {
            (0..n).map(|_| f(&mut rng) as f32).collect::<Vec<f32>>()
        };
        // The last BN of a residual branch is damped, as training leaves it.
        let damped = key.contains(".bn3.");
        let data = if key == "fc.weight" {
            fill(&mut |r| r.normal() * 0.01)
        } else if key == "fc.bias" {
            fill(&mut |r| r.normal() * 0.01)
        } else if key.ends_with(".running_var") {
            fill(&mut |r| 0.5 + r.uniform())
        } else if key.ends_with(".running_mean") {
            fill(&mut |r| r.normal() * 0.1)
        } else if shape.len() == 4 {
            let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
            let std = (2.0 / fan_in).sqrt();
            fill(&mut |r| r.normal() * std)
        } else if key.ends_with(".weight") {
            let (lo, width) = if damped { (0.1, 0.2) } else { (0.5, 0.5) };
            fill(&mut |r| lo + width * r.uniform())
        } else {
            fill(&mut |r| r.normal() * 0.05)
        };
        tensors.insert(key, Tensor::new(shape, data));
    }
    Checkpoint {
        path: PathBuf::from(format!("random-weights:{seed}")),
        container: Container::Safetensors,
        layout: KeyLayout::TorchVision,
        tensors,
        labels: None,
        sha256: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let c = ResNeXtConfig::new([1, 1, 1, 1], 2, 2, 4, 4, 3);
        let a = random_checkpoint(&c, 7);
        let b = random_checkpoint(&c, 7);
        let d = random_checkpoint(&c, 8);
        assert_eq!(a.tensors, b.tensors);
        assert_ne!(a.tensors["conv1.weight"], d.tensors["conv1.weight"]);
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut r = SplitMix64::new(1);
        let xs: Vec<f64> = (0..20000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }
}

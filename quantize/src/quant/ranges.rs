//! Choosing the clipping range of an activation from its calibration statistics.
//!
//! Every method sees a [`Histogram`] of the tensor's values over its observed `[min, max]` and
//! returns the float range `[lo, hi]` that the 256 int8 levels will cover:
//! * `minmax` — the observed range: no clipping, the coarsest steps;
//! * `percentile` — clip `|x|` at its 99.99th percentile;
//! * `entropy` — TensorRT's calibration: the threshold whose quantized distribution is closest
//!   (Kullback-Leibler) to the clipped one;
//! * `mse` — the threshold that minimizes the expected squared quantization error (rounding
//!   inside the range, clipping outside), computed over the histogram.

use serde::{Deserialize, Serialize};

/// Bins of every calibration histogram.
pub const BINS: usize = 2048;

/// How a clipping range is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Minmax,
    Percentile,
    Entropy,
    Mse,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Minmax => "minmax",
            Method::Percentile => "percentile",
            Method::Entropy => "entropy",
            Method::Mse => "mse",
        }
    }
}

/// Value counts over `[min, max]` in [`BINS`] equal bins.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub min: f32,
    pub max: f32,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over `[min, max]` (widened to include 0, and to a non-empty range).
    pub fn new(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let max = if max - min <= f32::EPSILON {
            min + 1e-6
        } else {
            max
        };
        Histogram {
            min,
            max,
            counts: vec![0; BINS],
        }
    }

    pub fn bin_width(&self) -> f64 {
        (self.max as f64 - self.min as f64) / BINS as f64
    }

    /// Counts `values` (values outside the range land in the edge bins).
    pub fn add(&mut self, values: &[f32]) {
        let (lo, w) = (self.min as f64, self.bin_width());
        for &v in values {
            let b = ((v as f64 - lo) / w) as isize;
            self.counts[b.clamp(0, BINS as isize - 1) as usize] += 1;
        }
    }

    /// Adds the counts of `other`, a histogram over the same range (another image's).
    pub fn merge(&mut self, other: &Histogram) {
        assert!(self.min == other.min && self.max == other.max);
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c += o;
        }
    }

    fn centre(&self, i: usize) -> f64 {
        self.min as f64 + (i as f64 + 0.5) * self.bin_width()
    }

    /// Histogram of `|x|` over `[0, max |x|]`, for the symmetric methods.
    fn folded(&self) -> (Vec<u64>, f64) {
        let absmax = (self.min.abs()).max(self.max.abs()) as f64;
        let mut out = vec![0u64; BINS];
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let b = (self.centre(i).abs() / absmax * BINS as f64) as usize;
                out[b.min(BINS - 1)] += c;
            }
        }
        (out, absmax / BINS as f64)
    }

    /// The range `method` chooses, within `[min, max]`.
    pub fn range(&self, method: Method) -> (f32, f32) {
        let threshold = match method {
            Method::Minmax => return (self.min, self.max),
            Method::Percentile => self.percentile_threshold(99.99),
            Method::Entropy => self.entropy_threshold(),
            Method::Mse => return self.mse_range(),
        };
        self.clip_to(threshold)
    }

    fn clip_to(&self, t: f64) -> (f32, f32) {
        (
            (self.min as f64).max(-t) as f32,
            (self.max as f64).min(t) as f32,
        )
    }

    fn percentile_threshold(&self, pct: f64) -> f64 {
        let (h, w) = self.folded();
        let total: u64 = h.iter().sum();
        let target = (total as f64 * pct / 100.0).ceil() as u64;
        let mut acc = 0;
        for (i, &c) in h.iter().enumerate() {
            acc += c;
            if acc >= target {
                return (i + 1) as f64 * w;
            }
        }
        BINS as f64 * w
    }

    /// TensorRT's entropy calibration on the histogram of `|x|`.
    fn entropy_threshold(&self) -> f64 {
        let (mut h, w) = self.folded();
        // Exact zeros (a ReLU's output) are represented exactly by any range; left in, their mass
        // drowns the shape of the distribution the threshold is about.
        h[0] = 0;
        // Levels on one side of zero: all 256 for a non-negative tensor, 128 for a signed one.
        let levels = if self.min >= 0.0 { 256 } else { 128 };
        let mut best = (f64::INFINITY, BINS);
        for i in (levels..=BINS).step_by(8) {
            let kl = kl_divergence_at(&h, i, levels);
            if kl < best.0 {
                best = (kl, i);
            }
        }
        best.1 as f64 * w
    }

    /// Searches symmetric thresholds for the range of least expected squared error.
    fn mse_range(&self) -> (f32, f32) {
        let absmax = (self.min.abs()).max(self.max.abs()) as f64;
        let mut best = (f64::INFINITY, (self.min, self.max));
        for k in 1..=200 {
            let t = absmax * k as f64 / 200.0;
            let (lo, hi) = self.clip_to(t);
            let err = self.expected_sq_error(lo as f64, hi as f64);
            if err < best.0 {
                best = (err, (lo, hi));
            }
        }
        best.1
    }

    /// Expected squared error of quantizing the histogram's values to 256 levels over `[lo, hi]`.
    fn expected_sq_error(&self, lo: f64, hi: f64) -> f64 {
        let step = (hi - lo) / 255.0;
        let rounding = step * step / 12.0;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let x = self.centre(i);
                let e = if x < lo {
                    (lo - x).powi(2)
                } else if x > hi {
                    (x - hi).powi(2)
                } else {
                    rounding
                };
                c as f64 * e
            })
            .sum()
    }
}

/// KL divergence between the first `i` bins of `h` (the tail folded into bin `i - 1`) and the
/// same bins quantized to `levels` levels, as TensorRT computes it.
fn kl_divergence_at(h: &[u64], i: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = h[..i].iter().map(|&c| c as f64).collect();
    p[i - 1] += h[i..].iter().sum::<u64>() as f64;
    let mut q = vec![0f64; i];
    let merged = i as f64 / levels as f64;
    for j in 0..levels {
        let start = (j as f64 * merged).floor() as usize;
        let end = if j == levels - 1 {
            i
        } else {
            ((j + 1) as f64 * merged).floor() as usize
        };
        if start >= end {
            continue;
        }
        let sum: f64 = h[start..end].iter().map(|&c| c as f64).sum();
        let nonzero = h[start..end].iter().filter(|&&c| c > 0).count();
        if nonzero > 0 {
            for k in start..end {
                if h[k] > 0 {
                    q[k] = sum / nonzero as f64;
                }
            }
        }
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(&q)
        .filter(|(&a, _)| a > 0.0)
        .map(|(&a, &b)| {
            let (a, b) = (a / sp, b / sq);
            if b > 0.0 {
                a * (a / b).ln()
            } else {
                // A level the quantized distribution lost: penalize as an unsmoothed outlier.
                a * (a / 1e-12).ln()
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relu_like(n: usize, outlier: f32) -> Histogram {
        // Half-normal-ish values plus one far outlier.
        let mut vals: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % n) as f32 / n as f32).powi(3) * 4.0)
            .collect();
        vals.push(outlier);
        let mut h = Histogram::new(0.0, outlier);
        h.add(&vals);
        h
    }

    #[test]
    fn minmax_keeps_everything() {
        let h = relu_like(10000, 100.0);
        assert_eq!(h.range(Method::Minmax), (0.0, 100.0));
    }

    #[test]
    fn percentile_and_entropy_drop_a_lone_outlier() {
        let h = relu_like(100_000, 100.0);
        for m in [Method::Percentile, Method::Entropy] {
            let (lo, hi) = h.range(m);
            assert_eq!(lo, 0.0, "{m:?}");
            assert!(hi < 20.0 && hi > 2.0, "{m:?} chose {hi}");
        }
        // One far value costs less as rounding noise over the whole range than clipped.
        assert!(h.range(Method::Mse).1 > 50.0);
    }

    #[test]
    fn mse_clips_a_long_tail() {
        // Exponential quantiles: a smooth tail whose rare large values are not worth the range.
        let n = 100_000;
        let vals: Vec<f32> = (0..n)
            .map(|i| -(1.0 - (i as f64 + 0.5) / n as f64).ln() as f32)
            .collect();
        let max = vals[n - 1];
        let mut h = Histogram::new(0.0, max);
        h.add(&vals);
        let (_, hi) = h.range(Method::Mse);
        assert!(hi < 0.95 * max && hi > 0.4 * max, "{hi} of {max}");
        let (lo_mm, hi_mm) = h.range(Method::Minmax);
        assert!(
            h.expected_sq_error(0.0, hi as f64) < h.expected_sq_error(lo_mm as f64, hi_mm as f64)
        );
    }

    #[test]
    fn signed_ranges_stay_inside_the_observed_range() {
        let vals: Vec<f32> = (0..5000).map(|i| (i as f32 / 5000.0 - 0.3) * 2.0).collect();
        let mut h = Histogram::new(-0.6, 1.4);
        h.add(&vals);
        for m in [
            Method::Minmax,
            Method::Percentile,
            Method::Entropy,
            Method::Mse,
        ] {
            let (lo, hi) = h.range(m);
            assert!(
                (-0.6..0.0).contains(&lo) && hi <= 1.4 && hi > 0.0,
                "{m:?}: {lo} {hi}"
            );
        }
    }

    #[test]
    fn uniform_data_is_not_clipped_by_mse() {
        let vals: Vec<f32> = (0..20000).map(|i| i as f32 / 20000.0).collect();
        let mut h = Histogram::new(0.0, 1.0);
        h.add(&vals);
        let (_, hi) = h.range(Method::Mse);
        assert!(hi > 0.95, "{hi}");
    }
}

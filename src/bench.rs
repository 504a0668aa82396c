//! `resnext-edge bench`: the model's own latency on this machine, batch 1, on a fixed input:
//! warm-up runs, then timed runs reported as median, p90 and min.

use super::Kernels;
use anyhow::Context;
use resnext_edge::model::Model;
use std::path::Path;
use std::time::Instant;

pub fn run(
    path: &Path,
    runs: usize,
    warmup: usize,
    kernels: Kernels,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    let mut model = Model::load_with(path, kernels.backend()).context("cannot load the model")?;
    let crop = model.metadata().preprocessing.crop;
    // A fixed, image-like input: smooth gradients in the normalized range.
    let input: Vec<f32> = (0..3 * crop * crop)
        .map(|i| {
            let (c, y, x) = (i / (crop * crop), (i / crop) % crop, i % crop);
            ((x + 2 * y + 37 * c) % 97) as f32 / 48.0 - 1.0
        })
        .collect();
    for _ in 0..warmup {
        model.run(&input)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        model.run(&input)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    // Stock tract runs on one thread whatever the setting.
    let threads = match kernels.backend() {
        resnext_edge::model::Backend::Native => resnext_edge::kernels::threads(),
        resnext_edge::model::Backend::Stock => 1,
    };
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (median, p90, min) = (pick(0.5), pick(0.9), times[0]);
    if json {
        let v = serde_json::json!({
            "median_ms": median,
            "p90_ms": p90,
            "min_ms": min,
            "runs": runs,
            "threads": threads,
            "kernels": kernels.describe(),
        });
        out!("{v}");
    } else {
        out!(
            "{}: median {median:.2} ms, p90 {p90:.2} ms, min {min:.2} ms over {runs} runs ({threads} threads, {} kernels)",
            path.display(),
            kernels.describe()
        );
    }
    Ok(())
}

//! `resnext-edge bench`: the model's own latency on this machine, batch 1, on a fixed input:
//! warm-up runs, then timed runs reported as median, p90 and min; with `--profile`, the time of
//! every layer too, summed per layer kind (what the stem, the grouped and the pointwise
//! convolutions and the layers left to tract each cost), and with `--json` also per layer.

use super::Kernels;
use anyhow::Context;
use resnext_edge::layers::{layer, Layer};
use resnext_edge::model::Model;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Options {
    pub runs: usize,
    pub warmup: usize,
    pub kernels: Kernels,
    pub profile: bool,
    pub json: bool,
}

/// The time of one layer kind over the timed runs.
struct KindTime {
    layer: Layer,
    layers: usize,
    total: Duration,
}

pub fn run(path: &Path, o: &Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.runs > 0, "--runs must be at least 1");
    let mut model = Model::load_with(path, o.kernels.backend()).context("cannot load the model")?;
    let crop = model.metadata().preprocessing.crop;
    // A fixed, image-like input: smooth gradients in the normalized range.
    let input: Vec<f32> = (0..3 * crop * crop)
        .map(|i| {
            let (c, y, x) = (i / (crop * crop), (i / crop) % crop, i % crop);
            ((x + 2 * y + 37 * c) % 97) as f32 / 48.0 - 1.0
        })
        .collect();
    for _ in 0..o.warmup {
        model.run(&input)?;
    }
    let mut per_node = vec![Duration::ZERO; model.typed_model().nodes().len()];
    let mut times = Vec::with_capacity(o.runs);
    for _ in 0..o.runs {
        let t = Instant::now();
        if o.profile {
            model.run_timed(&input, |id, d| {
                if let Some(slot) = per_node.get_mut(id) {
                    *slot += d
                }
            })?;
        } else {
            model.run(&input)?;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    // Stock tract runs on one thread whatever the setting.
    let threads = match o.kernels.backend() {
        resnext_edge::model::Backend::Native => resnext_edge::kernels::threads(),
        resnext_edge::model::Backend::Stock => 1,
    };
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (median, p90, min) = (pick(0.5), pick(0.9), times[0]);
    let kinds = if o.profile {
        by_kind(&model, &per_node)
    } else {
        Vec::new()
    };
    let all: Duration = kinds.iter().map(|k| k.total).sum();
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / o.runs as f64;
    if o.json {
        let mut v = serde_json::json!({
            "median_ms": median,
            "p90_ms": p90,
            "min_ms": min,
            "runs": o.runs,
            "threads": threads,
            "kernels": o.kernels.describe(),
        });
        if o.profile {
            v["profile"] = kinds
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kind": k.layer.kind,
                        "kernel": k.layer.kernel,
                        "layers": k.layers,
                        "ms_per_run": ms(k.total),
                        "share": k.total.as_secs_f64() / all.as_secs_f64().max(1e-12),
                        "macs": k.layer.macs,
                    })
                })
                .collect();
            // Every timed layer on its own, in plan order: which shape of a kind is slow.
            v["nodes"] = model
                .typed_model()
                .nodes()
                .iter()
                .zip(&per_node)
                .filter_map(|(node, &d)| {
                    let l = layer(node)?;
                    Some(serde_json::json!({
                        "name": node.name,
                        "kind": l.kind,
                        "ms_per_run": ms(d),
                        "macs": l.macs,
                    }))
                })
                .collect();
        }
        out!("{v}");
    } else {
        out!(
            "{}: median {median:.2} ms, p90 {p90:.2} ms, min {min:.2} ms over {} runs ({threads} threads, {} kernels)",
            path.display(),
            o.runs,
            o.kernels.describe()
        );
        if o.profile {
            out!(
                "{:<40} {:>6} {:>10} {:>7} {:>9}  kernel",
                "layer kind",
                "layers",
                "ms/run",
                "share",
                "GMAC/s"
            );
            for k in &kinds {
                let rate = k
                    .layer
                    .macs
                    .map(|m| format!("{:.1}", m as f64 / (ms(k.total) * 1e6)))
                    .unwrap_or_default();
                out!(
                    "{:<40} {:>6} {:>10.2} {:>6.1}% {:>9}  {}",
                    k.layer.kind,
                    k.layers,
                    ms(k.total),
                    100.0 * k.total.as_secs_f64() / all.as_secs_f64().max(1e-12),
                    rate,
                    k.layer.kernel
                );
            }
        }
    }
    Ok(())
}

/// Sums the nodes' times per layer kind (and kernel), the most expensive first; `macs` becomes
/// the kind's total per image.
fn by_kind(model: &Model, per_node: &[Duration]) -> Vec<KindTime> {
    let mut kinds: Vec<KindTime> = Vec::new();
    for (node, &d) in model.typed_model().nodes().iter().zip(per_node) {
        let Some(l) = layer(node) else { continue };
        match kinds
            .iter_mut()
            .find(|k| k.layer.kind == l.kind && k.layer.kernel == l.kernel)
        {
            Some(k) => {
                k.layers += 1;
                k.total += d;
                k.layer.macs = k.layer.macs.zip(l.macs).map(|(a, b)| a + b);
            }
            None => kinds.push(KindTime {
                layer: l,
                layers: 1,
                total: d,
            }),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.total));
    kinds
}

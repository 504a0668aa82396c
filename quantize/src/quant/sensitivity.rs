//! Per-layer sensitivity: quantize one activation (and the weights of the layers reading it) at
//! a time, everything else in float, and measure the logits' SQNR against the float model over
//! the calibration images. The least tolerant layers are the candidates for `--keep-float`.

use super::calibrate::{probe_model, run_all};
use super::params::{ActType, QParams};
use super::qdq::QdqEmitter;
use crate::float_net::{write_graph, FloatNet, OUTPUT};
use crate::image_pass::{progress, ImageSet};
use anyhow::Result;
use indicatif::ProgressBar;
use resnext_edge::metadata::ModelMetadata;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;

/// Logits of `model` on every image (the reference a candidate is measured against: a
/// thousand floats an image).
fn logits(
    model: &pb::ModelProto,
    images: &ImageSet,
    crop: usize,
    jobs: usize,
    bar: &ProgressBar,
) -> Result<Vec<Vec<f32>>> {
    let plan = probe_model(model, &[OUTPUT], crop)?;
    let mut out = Vec::with_capacity(images.len());
    images.pass(
        jobs,
        bar,
        |_, x| {
            Ok(run_all(&plan, &x, crop)?[0]
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect::<Vec<f32>>())
        },
        |_, l| {
            out.push(l);
            Ok(())
        },
    )?;
    Ok(out)
}

/// `(point, logit SQNR in dB)` for every point of `params` but those `always_float`, least
/// tolerant first.
#[allow(clippy::too_many_arguments)]
pub fn rank(
    net: &FloatNet,
    metadata: &ModelMetadata,
    float_model: &pb::ModelProto,
    params: &HashMap<String, QParams>,
    always_float: &HashSet<String>,
    act_type: ActType,
    images: &ImageSet,
    crop: usize,
    (jobs, quiet): (usize, bool),
) -> Result<Vec<(String, f64)>> {
    let names: Vec<String> = {
        let mut v: Vec<String> = params
            .keys()
            .filter(|n| !always_float.contains(*n))
            .cloned()
            .collect();
        v.sort();
        v
    };
    let bar = progress(
        ((names.len() + 1) * images.len()) as u64,
        "sensitivity",
        quiet,
    );
    let reference = logits(float_model, images, crop, jobs, &bar)?;
    let mut out = Vec::with_capacity(names.len());
    for name in &names {
        let mut e = QdqEmitter::new(act_type, params.clone());
        e.float_points = names.iter().filter(|n| *n != name).cloned().collect();
        e.float_points.extend(always_float.iter().cloned());
        let model = write_graph(net, &mut e, metadata, "");
        let plan = probe_model(&model, &[OUTPUT], crop)?;
        // Per image, its signal and error; summed in image order.
        let (mut sig, mut noise) = (0f64, 0f64);
        images.pass(
            jobs,
            &bar,
            |i, x| {
                let out = run_all(&plan, &x, crop)?;
                let m = out[0].to_plain_array_view::<f32>()?;
                let r = &reference[i];
                Ok((
                    r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>(),
                    r.iter()
                        .zip(m.iter())
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum::<f64>(),
                ))
            },
            |_, (s, n)| {
                sig += s;
                noise += n;
                Ok(())
            },
        )?;
        let db = if noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (sig / noise).log10()
        };
        log::debug!("sensitivity of {name}: {db:.2} dB");
        out.push((name.clone(), db));
    }
    bar.finish_and_clear();
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

//! Fidelity of a model against its reference over a labelled image folder: the accuracies
//! (top-1 and top-5, the seed table's columns) of both, how often they agree, how close their
//! logits are (cosine, SQNR), and which layers lose the most (per-layer SQNR, when the model
//! is an int8 model of the reference written by this tool: its activation `X.dq` is compared
//! with the reference's `X`).

use crate::quant::calibrate::{probe_model, progress, run_all};
use anyhow::{bail, Context, Result};
use prost::Message;
use resnext_edge::labels;
use resnext_edge::metadata::ModelMetadata;
use resnext_edge::preprocess::{decode_file, Preprocessor};
use resnext_edge::topk::top_indices;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// A layer and how much signal it keeps.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSqnr {
    pub layer: String,
    pub sqnr_db: f64,
}

/// The outcome of `evaluate`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub images: usize,
    pub skipped: usize,
    pub reference_accuracy: f64,
    pub model_accuracy: f64,
    pub reference_top5: f64,
    pub model_top5: f64,
    pub agreement: f64,
    pub cosine: f64,
    /// Logit SQNR over all images (total signal over total error).
    pub sqnr_db: f64,
    /// Median over the images of each image's logit SQNR: the typical image, which one image far
    /// outside the calibration ranges does not dominate.
    pub sqnr_db_median: f64,
    pub worst_layers: Vec<LayerSqnr>,
}

/// Images of an ImageFolder tree with their class indices.
pub fn image_folder(dir: &Path, labels: &[String]) -> Result<Vec<(PathBuf, usize)>> {
    let mut classes: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the image folder", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!(
            "{}: no class subfolders (expected DIR/<class>/<image>)",
            dir.display()
        );
    }
    let is_synset =
        |s: &str| s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit());
    let by_label = classes.iter().all(|(c, _)| labels.iter().any(|l| l == c));
    let by_synset = !by_label && classes.iter().all(|(c, _)| is_synset(c));
    let mut out = Vec::new();
    for (i, (name, path)) in classes.iter().enumerate() {
        let class = if by_label {
            labels.iter().position(|l| l == name).expect("checked")
        } else if by_synset {
            i
        } else {
            bail!(
                "{}: folder `{name}` is neither one of the model's labels nor an ImageNet synset",
                dir.display()
            );
        };
        let (files, _) = resnext_edge::inputs::collect(std::slice::from_ref(path));
        out.extend(files.into_iter().map(|f| (f, class)));
    }
    Ok(out)
}

fn read_proto(path: &Path) -> Result<pb::ModelProto> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    pb::ModelProto::decode(bytes.as_slice())
        .with_context(|| format!("{}: not an ONNX model", path.display()))
}

fn tensor_names(p: &pb::ModelProto) -> std::collections::HashSet<String> {
    p.graph
        .iter()
        .flat_map(|g| g.node.iter().flat_map(|n| n.output.iter().cloned()))
        .collect()
}

/// For a QOperator model (layers exchange `X.q`, with `X.scale` and `X.zp`), adds a
/// `DequantizeLinear` writing `X.dq` for every such layer, as a QDQ model has them.
fn dequantize_layers(p: &mut pb::ModelProto) {
    let Some(g) = p.graph.as_mut() else { return };
    let initializers: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let outputs: std::collections::HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    let mut extra = Vec::new();
    for out in &outputs {
        let Some(layer) = out.strip_suffix(".q") else {
            continue;
        };
        let (scale, zp) = (format!("{layer}.scale"), format!("{layer}.zp"));
        let dq = format!("{layer}.dq");
        if initializers.contains(scale.as_str())
            && initializers.contains(zp.as_str())
            && !outputs.contains(dq.as_str())
        {
            extra.push(pb::NodeProto {
                name: format!("{layer}.evaluate.dequantize"),
                op_type: "DequantizeLinear".into(),
                input: vec![out.to_string(), scale, zp],
                output: vec![dq],
                ..Default::default()
            });
        }
    }
    extra.sort_by(|a, b| a.name.cmp(&b.name));
    g.node.extend(extra);
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs a probe model on one input; every output flattened.
fn run_probe(plan: &Arc<TypedRunnableModel>, input: &[f32], crop: usize) -> Result<Vec<Vec<f32>>> {
    run_all(plan, input, crop)?
        .iter()
        .map(|o| Ok(o.to_plain_array_view::<f32>()?.iter().copied().collect()))
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// Evaluates `model` against `reference` on the ImageFolder tree `images`.
pub fn evaluate(reference: &Path, model: &Path, images: &Path, quiet: bool) -> Result<Report> {
    let ref_proto = read_proto(reference)?;
    let mut model_proto = read_proto(model)?;
    dequantize_layers(&mut model_proto);
    let meta = ModelMetadata::from_props(
        ref_proto
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str())),
    )
    .with_context(|| reference.display().to_string())?;
    let crop = meta.preprocessing.crop;
    let output_of = |p: &pb::ModelProto| {
        p.graph
            .as_ref()
            .and_then(|g| g.output.first())
            .map(|o| o.name.clone())
            .unwrap_or_default()
    };
    // Layers both models have: X in the reference, X.dq in the int8 model.
    let model_names = tensor_names(&model_proto);
    let mut layers: Vec<String> = ref_proto
        .graph
        .iter()
        .flat_map(|g| g.node.iter().flat_map(|n| n.output.iter()))
        .filter(|n| model_names.contains(&format!("{n}.dq")))
        .cloned()
        .collect();
    layers.dedup();
    let mut ref_outputs = vec![output_of(&ref_proto)];
    ref_outputs.extend(layers.iter().cloned());
    let mut model_outputs = vec![output_of(&model_proto)];
    model_outputs.extend(layers.iter().map(|l| format!("{l}.dq")));
    let ref_probe = probe_model(&ref_proto, &as_refs(&ref_outputs), crop)
        .with_context(|| format!("{}: cannot load", reference.display()))?;
    let model_probe = probe_model(&model_proto, &as_refs(&model_outputs), crop)
        .with_context(|| format!("{}: cannot load", model.display()))?;

    let n_classes = meta.arch.as_ref().map(|a| a.num_classes);
    let names = labels::resolve(meta.labels.as_deref(), n_classes.unwrap_or(1000));
    let files = image_folder(images, &names)?;
    if files.is_empty() {
        bail!("{}: no images in the class folders", images.display());
    }
    let mut pre = Preprocessor::new(meta.preprocessing.clone());
    let bar = progress(files.len() as u64, "evaluating", quiet);
    let (mut n, mut skipped) = (0usize, 0usize);
    let (mut ref1, mut mod1, mut ref5, mut mod5, mut agree) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut cos_sum, mut sig, mut noise) = (0f64, 0f64, 0f64);
    let mut layer_acc = vec![(0f64, 0f64); layers.len()];
    let mut per_image = Vec::with_capacity(files.len());
    for (path, class) in &files {
        bar.inc(1);
        let img = match decode_file(path) {
            Ok(i) => i,
            Err(e) => {
                log::warn!("skipping: {e}");
                skipped += 1;
                continue;
            }
        };
        let input = pre.preprocess(&img);
        let r = run_probe(&ref_probe, &input, crop)?;
        let m = run_probe(&model_probe, &input, crop)?;
        let (rl, ml) = (&r[0], &m[0]);
        let (rt, mt) = (top_indices(rl, 5), top_indices(ml, 5));
        ref1 += (rt[0] == *class) as usize;
        mod1 += (mt[0] == *class) as usize;
        ref5 += rt.contains(class) as usize;
        mod5 += mt.contains(class) as usize;
        agree += (rt[0] == mt[0]) as usize;
        let dot: f64 = rl.iter().zip(ml).map(|(a, b)| *a as f64 * *b as f64).sum();
        let (na, nb): (f64, f64) = (
            rl.iter().map(|a| (*a as f64).powi(2)).sum(),
            ml.iter().map(|b| (*b as f64).powi(2)).sum(),
        );
        cos_sum += dot / (na.sqrt() * nb.sqrt()).max(1e-30);
        let err: f64 = rl
            .iter()
            .zip(ml)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        sig += na;
        noise += err;
        per_image.push(sqnr_db(na, err));
        for (acc, (rv, mv)) in layer_acc.iter_mut().zip(r[1..].iter().zip(&m[1..])) {
            acc.0 += rv.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
            acc.1 += rv
                .iter()
                .zip(mv)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>();
        }
        n += 1;
    }
    bar.finish_and_clear();
    if n == 0 {
        bail!(
            "{}: none of the {} images could be read",
            images.display(),
            files.len()
        );
    }
    let mut worst: Vec<LayerSqnr> = layers
        .iter()
        .zip(&layer_acc)
        .map(|(l, (s, e))| LayerSqnr {
            layer: l.clone(),
            sqnr_db: sqnr_db(*s, *e),
        })
        .collect();
    worst.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
    worst.truncate(5);
    let f = |k: usize| k as f64 / n as f64;
    Ok(Report {
        images: n,
        skipped,
        reference_accuracy: f(ref1),
        model_accuracy: f(mod1),
        reference_top5: f(ref5),
        model_top5: f(mod5),
        agreement: f(agree),
        cosine: cos_sum / n as f64,
        sqnr_db: sqnr_db(sig, noise),
        sqnr_db_median: median(&mut per_image),
        worst_layers: worst,
    })
}

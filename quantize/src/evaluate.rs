//! Fidelity of a model against its reference over a labelled image folder: the accuracies
//! (top-1 and top-5, the seed table's columns) of both, how often they agree, how close their
//! logits are (cosine, SQNR), and which layers lose the most (per-layer SQNR, when the model
//! is an int8 model of the reference written by this tool: its activation `X.dq` is compared
//! with the reference's `X`).
//!
//! At scale: the images are split across threads and their results summed in image order (the
//! report is the same for any thread count); the model under test runs on the runtime, as the
//! board runs it; the per-layer probes, which make every layer an output of both models, run
//! on the first `--layer-images` images only, so the rest costs two forward passes an image.

use crate::image_pass::{progress, run_ordered};
use crate::quant::calibrate::{probe_model, run_all};
use anyhow::{bail, Context, Result};
use prost::Message;
use resnext_edge::labels;
use resnext_edge::metadata::ModelMetadata;
use resnext_edge::model::{Backend, Model};
use resnext_edge::preprocess::{decode_file, Preprocessor};
use resnext_edge::topk::top_indices;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
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
    /// The layers losing the most signal, over the first `layer_images` images.
    pub worst_layers: Vec<LayerSqnr>,
    pub layer_images: usize,
    /// What ran the model under test: the runtime's native int8 path (the kernel set and how
    /// many layers it took) or stock tract.
    pub model_runtime: String,
    pub jobs: usize,
    /// Images evaluated per second of wall time (both models, all jobs).
    pub images_per_s: f64,
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

/// What runs the model under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// The runtime as the board runs it: the native int8 kernels where the rewrite takes the
    /// layers, stock tract elsewhere.
    Native,
    /// Stock tract on the file as written: every operator as ONNX defines it (the same engine
    /// for models of any quantizer, for comparing quantizers).
    Stock,
}

/// How `evaluate` runs.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub runtime: Runtime,
    /// Threads the images are split across (the report is the same for any count).
    pub jobs: usize,
    /// Evaluate at most this many images, taken one class at a time.
    pub limit: Option<usize>,
    /// Per-layer SQNR on the first this many images only (each costs a probe of both models
    /// with every layer as an output).
    pub layer_images: usize,
    pub quiet: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            runtime: Runtime::Native,
            jobs: crate::image_pass::default_jobs(),
            limit: None,
            layer_images: 64,
            quiet: false,
        }
    }
}

/// What one image adds to the report.
struct Outcome {
    class: usize,
    ref_top: Vec<usize>,
    model_top: Vec<usize>,
    /// Dot product and squared norms of the two logit vectors, and their squared difference.
    dot: f64,
    ref_sq: f64,
    model_sq: f64,
    err: f64,
    /// Per layer, the reference's squared norm and the squared difference (layer images only).
    layers: Option<Vec<(f64, f64)>>,
}

/// The per-thread state of an evaluation: a preprocessor and, on the native runtime, the model
/// under test (its own copy: `Model::run` takes it mutably).
struct Worker {
    pre: Preprocessor,
    model: Option<Model>,
}

/// Squared norm of `a`, and the dot product with and squared difference from `b`.
fn compare(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let sq: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    let err: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    (sq, dot, err)
}

/// Evaluates `model` against `reference` on the ImageFolder tree `images`: the reference on
/// tract (float), the model on the runtime as the board runs it (`resnext_edge::model::Model`:
/// the native int8 kernels where the rewrite takes the layers, one kernel thread per job).
pub fn evaluate(
    reference: &Path,
    model: &Path,
    images: &Path,
    opts: &EvalOptions,
) -> Result<Report> {
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
    let ref_out = output_of(&ref_proto);
    let ref_logits = probe_model(&ref_proto, &[ref_out.as_str()], crop)
        .with_context(|| format!("{}: cannot load", reference.display()))?;
    // The layer probes: both models with every common layer as an output (stock tract).
    let probes = if layers.is_empty() || opts.layer_images == 0 {
        None
    } else {
        let ref_layers = probe_model(&ref_proto, &as_refs(&layers), crop)
            .with_context(|| format!("{}: cannot load", reference.display()))?;
        let dq: Vec<String> = layers.iter().map(|l| format!("{l}.dq")).collect();
        let model_layers = probe_model(&model_proto, &as_refs(&dq), crop)
            .with_context(|| format!("{}: cannot load", model.display()))?;
        Some((ref_layers, model_layers))
    };
    // One kernel thread per job: the jobs are the parallelism.
    resnext_edge::kernels::set_threads(1);
    let load = || -> Result<Model> {
        let m = Model::load_with(model, Backend::Native)?;
        if m.metadata().preprocessing.crop != crop {
            bail!(
                "{}: crop {} differs from the reference's {crop}",
                model.display(),
                m.metadata().preprocessing.crop
            );
        }
        Ok(m)
    };
    // Native: loaded here once for its errors and its description, and each job loads its own
    // copy. Stock: one plan of the file's logits, shared.
    let (first, stock, runtime) = match opts.runtime {
        Runtime::Native => {
            let first = load()?;
            let runtime = match first.native_ops() {
                0 => "stock tract (no layer for the native path)".to_string(),
                n => format!(
                    "native ({}), {n} native ops",
                    resnext_edge::kernels::selected().name()
                ),
            };
            (Some(first), None, runtime)
        }
        Runtime::Stock => {
            let plan = probe_model(&model_proto, &[output_of(&model_proto).as_str()], crop)
                .with_context(|| format!("{}: cannot load", model.display()))?;
            (None, Some(plan), "stock tract".to_string())
        }
    };
    drop(model_proto);
    let first = Mutex::new(first);

    let n_classes = meta.arch.as_ref().map(|a| a.num_classes);
    let names = labels::resolve(meta.labels.as_deref(), n_classes.unwrap_or(1000));
    let mut files = image_folder(images, &names)?;
    if files.is_empty() {
        bail!("{}: no images in the class folders", images.display());
    }
    if let Some(limit) = opts.limit {
        let class: std::collections::HashMap<PathBuf, usize> = files.iter().cloned().collect();
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        files = crate::image_pass::balanced(&paths, Some(limit))
            .into_iter()
            .map(|p| {
                let c = class[&p];
                (p, c)
            })
            .collect();
    }
    let bar = progress(files.len() as u64, "evaluating", opts.quiet);
    let started = Instant::now();
    let (mut n, mut skipped) = (0usize, 0usize);
    let (mut ref1, mut mod1, mut ref5, mut mod5, mut agree) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut cos_sum, mut sig, mut noise) = (0f64, 0f64, 0f64);
    let mut layer_acc = vec![(0f64, 0f64); layers.len()];
    let (mut layer_images, mut per_image) = (0usize, Vec::with_capacity(files.len()));
    let mut failed = None;
    run_ordered(
        files.len(),
        opts.jobs,
        || -> Result<Worker> {
            let taken = first.lock().unwrap_or_else(|e| e.into_inner()).take();
            let model = match (taken, opts.runtime) {
                (Some(m), _) => Some(m),
                (None, Runtime::Native) => Some(load()?),
                (None, Runtime::Stock) => None,
            };
            Ok(Worker {
                pre: Preprocessor::new(meta.preprocessing.clone()),
                model,
            })
        },
        |worker, i| -> Result<Option<Outcome>> {
            let w = worker.as_mut().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let (path, class) = &files[i];
            let img = match decode_file(path) {
                Ok(img) => img,
                Err(e) => {
                    log::warn!("skipping: {e}");
                    return Ok(None);
                }
            };
            let input = w.pre.preprocess(&img);
            let r = &run_probe(&ref_logits, &input, crop)?[0];
            let m = match (&mut w.model, &stock) {
                (Some(model), _) => model.run(&input)?,
                (None, Some(plan)) => run_probe(plan, &input, crop)?.swap_remove(0),
                (None, None) => unreachable!("a runtime is chosen"),
            };
            let (ref_sq, dot, err) = compare(r, &m);
            let model_sq = m.iter().map(|b| (*b as f64).powi(2)).sum();
            let layers = match &probes {
                Some((rp, mp)) if i < opts.layer_images => {
                    let (rl, ml) = (run_probe(rp, &input, crop)?, run_probe(mp, &input, crop)?);
                    Some(
                        rl.iter()
                            .zip(&ml)
                            .map(|(a, b)| {
                                let (sq, _, err) = compare(a, b);
                                (sq, err)
                            })
                            .collect(),
                    )
                }
                _ => None,
            };
            Ok(Some(Outcome {
                class: *class,
                ref_top: top_indices(r, 5),
                model_top: top_indices(&m, 5),
                dot,
                ref_sq,
                model_sq,
                err,
                layers,
            }))
        },
        |_, outcome| {
            bar.inc(1);
            let o = match outcome {
                Ok(Some(o)) => o,
                Ok(None) => {
                    skipped += 1;
                    return true;
                }
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            };
            let (rt, mt, class) = (&o.ref_top, &o.model_top, &o.class);
            ref1 += (rt[0] == *class) as usize;
            mod1 += (mt[0] == *class) as usize;
            ref5 += rt.contains(class) as usize;
            mod5 += mt.contains(class) as usize;
            agree += (rt[0] == mt[0]) as usize;
            cos_sum += o.dot / (o.ref_sq.sqrt() * o.model_sq.sqrt()).max(1e-30);
            sig += o.ref_sq;
            noise += o.err;
            per_image.push(sqnr_db(o.ref_sq, o.err));
            if let Some(l) = o.layers {
                layer_images += 1;
                for (acc, (s, e)) in layer_acc.iter_mut().zip(l) {
                    acc.0 += s;
                    acc.1 += e;
                }
            }
            n += 1;
            true
        },
    );
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
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
        .filter(|_| layer_images > 0)
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
        layer_images,
        model_runtime: runtime,
        jobs: opts.jobs,
        images_per_s: (n + skipped) as f64 / seconds,
    })
}

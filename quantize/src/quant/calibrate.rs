//! Calibration: the float model run over representative images, and the statistics of every
//! activation the int8 model will quantize. Two passes over the images: the first finds each
//! tensor's range, the second fills a histogram over it, so that every range method works on
//! exact counts whatever the number of images.

use super::ranges::Histogram;
use crate::float_net::ActPoint;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use resnext_edge::inputs;
use resnext_edge::metadata::Preprocessing;
use resnext_edge::preprocess::{decode_file, Preprocessor};
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Preprocessed calibration inputs, and what was skipped.
pub struct CalibrationImages {
    pub inputs: Vec<Vec<f32>>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// A progress bar on stderr (hidden when stderr is not a terminal or `quiet`).
pub fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Reads up to `count` images (all by default) from `dir`, recursively in name order. Unreadable
/// images are warned about, counted and skipped; it is an error when none is left.
pub fn load_images(
    dir: &Path,
    count: Option<usize>,
    pre: &Preprocessing,
    quiet: bool,
) -> Result<CalibrationImages> {
    if !dir.is_dir() {
        bail!(
            "{}: calibration folder does not exist or is not a directory",
            dir.display()
        );
    }
    let (files, _) = inputs::collect(&[dir.to_path_buf()]);
    if files.is_empty() {
        bail!(
            "{}: no images (.jpg, .jpeg, .png) in the calibration folder",
            dir.display()
        );
    }
    let want = count.unwrap_or(files.len()).min(files.len());
    let mut p = Preprocessor::new(pre.clone());
    let mut out = CalibrationImages {
        inputs: Vec::new(),
        skipped: Vec::new(),
    };
    let bar = progress(want as u64, "reading", quiet);
    for f in &files {
        if out.inputs.len() == want {
            break;
        }
        match decode_file(f) {
            Ok(img) => {
                out.inputs.push(p.preprocess(&img));
                bar.inc(1);
            }
            Err(e) => {
                log::warn!("skipping calibration image: {e}");
                out.skipped.push((f.clone(), e.to_string()));
            }
        }
    }
    bar.finish_and_clear();
    if out.inputs.is_empty() {
        bail!(
            "{}: none of the {} images in the calibration folder could be read (first: {})",
            dir.display(),
            files.len(),
            out.skipped[0].1
        );
    }
    Ok(out)
}

/// A model with the named tensors as its outputs, ready to run at batch 1.
pub fn probe_model(
    proto: &pb::ModelProto,
    names: &[&str],
    crop: usize,
) -> Result<Arc<TypedRunnableModel>> {
    let onnx = resnext_edge::model::onnx_loader();
    let mut model = onnx
        .model_for_proto_model(proto)
        .context("loading the float model")?;
    model.select_outputs_by_name(names)?;
    let model = model.with_input_fact(0, f32::fact([1, 3, crop, crop]).into())?;
    model.into_optimized()?.into_runnable()
}

pub fn run_all(plan: &Arc<TypedRunnableModel>, input: &[f32], crop: usize) -> Result<TVec<TValue>> {
    let t = Tensor::from_shape(&[1, 3, crop, crop], input)?;
    plan.run(tvec!(t.into_tvalue()))
}

/// Histograms of every activation point that has its own quantization (`same_as` is `None`),
/// in the order of `points`.
pub fn collect_histograms(
    proto: &pb::ModelProto,
    points: &[ActPoint],
    images: &[Vec<f32>],
    crop: usize,
    quiet: bool,
) -> Result<Vec<(String, Histogram)>> {
    let own: Vec<&ActPoint> = points.iter().filter(|p| p.same_as.is_none()).collect();
    let names: Vec<&str> = own.iter().map(|p| p.name.as_str()).collect();
    let plan = probe_model(proto, &names, crop)?;
    let bar = progress(2 * images.len() as u64, "calibrating", quiet);
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); own.len()];
    for img in images {
        let outs = run_all(&plan, img, crop)?;
        for (r, o) in ranges.iter_mut().zip(&outs) {
            for &v in o.to_plain_array_view::<f32>()?.iter() {
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
            }
        }
        bar.inc(1);
    }
    let mut hists: Vec<Histogram> = ranges
        .iter()
        .map(|&(lo, hi)| Histogram::new(lo, hi))
        .collect();
    for img in images {
        let outs = run_all(&plan, img, crop)?;
        for (h, o) in hists.iter_mut().zip(&outs) {
            let view = o.to_plain_array_view::<f32>()?;
            match view.as_slice() {
                Some(s) => h.add(s),
                None => h.add(&view.iter().copied().collect::<Vec<_>>()),
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(names.iter().map(|n| n.to_string()).zip(hists).collect())
}

/// Per-channel maxima of the named `[1, C, H, W]` tensors over `images`.
pub fn collect_channel_max(
    proto: &pb::ModelProto,
    names: &[String],
    images: &[Vec<f32>],
    crop: usize,
    quiet: bool,
) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let plan = probe_model(proto, &refs, crop)?;
    let bar = progress(images.len() as u64, "equalizing", quiet);
    let mut maxima: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
    for img in images {
        let outs = run_all(&plan, img, crop)?;
        for (m, o) in maxima.iter_mut().zip(&outs) {
            let c = o.shape()[1];
            let view = o.to_plain_array_view::<f32>()?;
            let data = view.as_slice().context("contiguous output")?;
            let plane = data.len() / c;
            m.resize(c, f32::NEG_INFINITY);
            for (ch, mx) in m.iter_mut().enumerate() {
                *mx = data[ch * plane..(ch + 1) * plane]
                    .iter()
                    .fold(*mx, |a, &v| a.max(v));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(names.iter().cloned().zip(maxima).collect())
}

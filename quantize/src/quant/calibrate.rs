//! Calibration: the float model run over representative images, and the statistics of every
//! activation the int8 model will quantize. Two passes over the images: the first finds each
//! tensor's range, the second fills a histogram over it, so that every range method works on
//! exact counts whatever the number of images. The images are read as each pass needs them and
//! split across threads ([`crate::image_pass`]): memory does not grow with their count, and the
//! statistics are the same for any number of threads.

use super::ranges::Histogram;
use crate::float_net::ActPoint;
use crate::image_pass::{self, progress, ImageSet, Opened};
use anyhow::{bail, Context, Result};
use resnext_edge::inputs;
use resnext_edge::metadata::Preprocessing;
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// The calibration images of `dir` (searched recursively): all of them, or `count` of them
/// taken one class (folder) at a time ([`image_pass::balanced`]), so that a sample of a large
/// class-per-folder tree such as ImageNet's `val/<synset>/` covers its classes. Unreadable
/// images are warned about, counted and skipped; it is an error when none is left.
pub fn open_images(
    dir: &Path,
    count: Option<usize>,
    pre: &Preprocessing,
    jobs: usize,
    quiet: bool,
) -> Result<Opened> {
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
    let candidates = image_pass::balanced(&files, None);
    ImageSet::open(&candidates, count, pre, jobs, quiet)
        .with_context(|| format!("{}: calibration folder", dir.display()))
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
/// in the order of `points`: a pass for the ranges, a pass for the counts, each image's
/// statistics made on its thread and merged in image order (minima, maxima and counts: the
/// same whatever the job count).
pub fn collect_histograms(
    proto: &pb::ModelProto,
    points: &[ActPoint],
    images: &ImageSet,
    crop: usize,
    (jobs, quiet): (usize, bool),
) -> Result<Vec<(String, Histogram)>> {
    let own: Vec<&ActPoint> = points.iter().filter(|p| p.same_as.is_none()).collect();
    let names: Vec<&str> = own.iter().map(|p| p.name.as_str()).collect();
    let plan = probe_model(proto, &names, crop)?;
    let bar = progress(2 * images.len() as u64, "calibrating", quiet);
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); own.len()];
    images.pass(
        jobs,
        &bar,
        |_, x| {
            run_all(&plan, &x, crop)?
                .iter()
                .map(|o| {
                    let view = o.to_plain_array_view::<f32>()?;
                    Ok(view
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |r, &v| {
                            (r.0.min(v), r.1.max(v))
                        }))
                })
                .collect::<Result<Vec<_>>>()
        },
        |_, image| {
            for (r, (lo, hi)) in ranges.iter_mut().zip(image) {
                *r = (r.0.min(lo), r.1.max(hi));
            }
            Ok(())
        },
    )?;
    let empty: Vec<Histogram> = ranges
        .iter()
        .map(|&(lo, hi)| Histogram::new(lo, hi))
        .collect();
    let mut hists = empty.clone();
    images.pass(
        jobs,
        &bar,
        |_, x| {
            let mut mine = empty.clone();
            for (h, o) in mine.iter_mut().zip(&run_all(&plan, &x, crop)?) {
                let view = o.to_plain_array_view::<f32>()?;
                match view.as_slice() {
                    Some(s) => h.add(s),
                    None => h.add(&view.iter().copied().collect::<Vec<_>>()),
                }
            }
            Ok(mine)
        },
        |_, mine| {
            for (h, m) in hists.iter_mut().zip(mine) {
                h.merge(&m);
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(names.iter().map(|n| n.to_string()).zip(hists).collect())
}

/// Per-channel maxima of the named `[1, C, H, W]` tensors over `images`.
pub fn collect_channel_max(
    proto: &pb::ModelProto,
    names: &[String],
    images: &ImageSet,
    crop: usize,
    (jobs, quiet): (usize, bool),
) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let plan = probe_model(proto, &refs, crop)?;
    let bar = progress(images.len() as u64, "equalizing", quiet);
    let mut maxima: Vec<Vec<f32>> = vec![Vec::new(); names.len()];
    images.pass(
        jobs,
        &bar,
        |_, x| {
            run_all(&plan, &x, crop)?
                .iter()
                .map(|o| {
                    let c = o.shape()[1];
                    let view = o.to_plain_array_view::<f32>()?;
                    let data = view.as_slice().context("contiguous output")?;
                    let plane = data.len() / c;
                    Ok((0..c)
                        .map(|ch| {
                            data[ch * plane..(ch + 1) * plane]
                                .iter()
                                .fold(f32::NEG_INFINITY, |a, &v| a.max(v))
                        })
                        .collect::<Vec<f32>>())
                })
                .collect::<Result<Vec<_>>>()
        },
        |_, image| {
            for (m, im) in maxima.iter_mut().zip(image) {
                m.resize(im.len(), f32::NEG_INFINITY);
                for (mx, v) in m.iter_mut().zip(im) {
                    *mx = mx.max(v);
                }
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(names.iter().cloned().zip(maxima).collect())
}

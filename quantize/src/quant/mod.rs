//! Post-training int8 quantization of a ResNeXt: calibrate the float model on images, choose
//! every activation's range, quantize weights per channel, and write the int8 ONNX model.

pub mod bias_correction;
pub mod calibrate;
pub mod equalize;
pub mod params;
pub mod qdq;
pub mod qoperator;
pub mod ranges;
pub mod sensitivity;

use crate::export::Source;
use crate::float_net::{self, write_graph, FloatNet, OUTPUT};
use anyhow::{bail, Result};
use params::{ActType, QParams};
use ranges::Method;
use resnext_edge::metadata::ModelMetadata;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tract_onnx::pb;

/// The int8 layouts of the model contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// QuantizeLinear / DequantizeLinear around float ops (standard ONNX).
    Qdq,
    /// Integer operators: QLinearConv, QLinearMatMul, com.microsoft QLinearAdd and
    /// QLinearGlobalAveragePool.
    #[value(name = "qoperator")]
    QOperator,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Qdq => "qdq",
            Format::QOperator => "qoperator",
        }
    }
}

/// What the user chose.
#[derive(Clone, Debug)]
pub struct Options {
    pub method: Method,
    pub act_type: ActType,
    pub format: Format,
    pub calib_count: Option<usize>,
    /// Empirical bias correction.
    pub bias_correction: bool,
    /// Activation equalization across the ReLUs inside blocks.
    pub equalize: bool,
    /// Leave the N most sensitive activations (by a one-at-a-time pass) in float.
    pub keep_float: usize,
    /// Every calibrated range is widened by this factor, for inputs beyond the calibration set.
    pub headroom: f32,
    /// QDQ: the last conv of each block feeds the residual add unquantized (one requantization
    /// after conv + add + ReLU, as a fused kernel computes it).
    pub fuse_residual: bool,
    /// Threads the passes over the calibration images split across (the model written is the
    /// same for any count).
    pub jobs: usize,
    /// No progress bars.
    pub quiet: bool,
}

/// What a quantization did, for the summary.
impl Default for Options {
    /// The command line's defaults: QDQ, u8 activations, mse ranges with 1.5x headroom, fused
    /// residual, every calibration image.
    fn default() -> Self {
        Options {
            method: Method::Mse,
            act_type: ActType::U8,
            format: Format::Qdq,
            calib_count: None,
            bias_correction: false,
            equalize: false,
            keep_float: 0,
            headroom: 1.5,
            fuse_residual: true,
            jobs: crate::image_pass::default_jobs(),
            quiet: false,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub images_used: usize,
    pub images_skipped: usize,
    pub method: &'static str,
    pub activations: &'static str,
    pub format: &'static str,
    pub quantized_tensors: usize,
    pub bias_correction: bool,
    pub equalize: bool,
    /// Activations left in float by `--keep-float`, most sensitive first.
    pub kept_float: Vec<String>,
    pub headroom: f32,
    pub fuse_residual: bool,
}

/// The points that a fused residual leaves unquantized: each block's last conv output.
fn residual_branch_points(net: &FloatNet) -> HashSet<String> {
    net.blocks
        .iter()
        .map(|b| b.conv3.shape.name.clone())
        .collect()
}

/// Calibrates on `calib_dir` and returns the int8 model with its summary.
pub fn quantize(
    source: &Source,
    mut metadata: ModelMetadata,
    calib_dir: &Path,
    opts: &Options,
) -> Result<(pb::ModelProto, Summary)> {
    if opts.format == Format::QOperator && opts.keep_float > 0 {
        bail!("--keep-float needs the QDQ layout (QOperator layers are integer only)");
    }
    let mut net = FloatNet::from_checkpoint(&source.checkpoint, &source.config);
    let calibration = calibrate::open_images(
        calib_dir,
        opts.calib_count,
        &metadata.preprocessing,
        opts.jobs,
        opts.quiet,
    )?;
    let images = &calibration.set;
    let run = (opts.jobs, opts.quiet);
    let crop = metadata.preprocessing.crop;
    if opts.equalize {
        let names: Vec<String> = net
            .blocks
            .iter()
            .flat_map(|b| {
                [
                    format!("{}.conv1.relu", b.name),
                    format!("{}.conv2.relu", b.name),
                ]
            })
            .collect();
        let channel_max =
            calibrate::collect_channel_max(&net.to_onnx(&metadata), &names, images, crop, run)?;
        equalize::equalize(&mut net, &channel_max);
    }
    let (float_model, mut points) = net.to_onnx_with_points(&metadata);
    if opts.format == Format::QOperator {
        // The QOperator head quantizes its product; its range comes from the logits'.
        points.push(float_net::point(OUTPUT, false));
    }
    let hists = calibrate::collect_histograms(&float_model, &points, images, crop, run)?;
    let mut logits_range = None;
    let mut params: HashMap<String, QParams> = HashMap::new();
    for (name, h) in &hists {
        let (lo, hi) = h.range(opts.method);
        let (lo, hi) = (lo * opts.headroom, hi * opts.headroom);
        if name == OUTPUT {
            logits_range = Some((lo, hi));
        } else {
            params.insert(name.clone(), QParams::for_range(lo, hi, opts.act_type));
        }
    }
    let fused = if opts.format == Format::Qdq && opts.fuse_residual {
        residual_branch_points(&net)
    } else {
        HashSet::new()
    };
    let kept_float: Vec<String> = if opts.keep_float > 0 {
        let ranked = sensitivity::rank(
            &net,
            &metadata,
            &float_model,
            &params,
            &fused,
            opts.act_type,
            images,
            crop,
            run,
        )?;
        for (name, db) in ranked.iter().take(opts.keep_float) {
            log::info!("keeping {name} in float (alone quantized: {db:.2} dB logit SQNR)");
        }
        ranked
            .into_iter()
            .take(opts.keep_float)
            .map(|(n, _)| n)
            .collect()
    } else {
        Vec::new()
    };
    let summary = Summary {
        images_used: images.len(),
        images_skipped: calibration.skipped.len(),
        method: opts.method.name(),
        activations: opts.act_type.name(),
        format: opts.format.name(),
        quantized_tensors: params.len() - fused.len(),
        bias_correction: opts.bias_correction,
        equalize: opts.equalize,
        kept_float: kept_float.clone(),
        headroom: opts.headroom,
        fuse_residual: !fused.is_empty(),
    };
    metadata.extra.extend([
        ("quant.format".to_string(), summary.format.to_string()),
        ("quant.method".to_string(), summary.method.to_string()),
        (
            "quant.activations".to_string(),
            summary.activations.to_string(),
        ),
        (
            "quant.weights".to_string(),
            "s8 symmetric per-channel".to_string(),
        ),
        (
            "quant.calibration_images".to_string(),
            summary.images_used.to_string(),
        ),
        ("quant.headroom".to_string(), opts.headroom.to_string()),
        (
            "quant.fused_residual".to_string(),
            summary.fuse_residual.to_string(),
        ),
        (
            "quant.bias_correction".to_string(),
            opts.bias_correction.to_string(),
        ),
        ("quant.equalization".to_string(), opts.equalize.to_string()),
        (
            "quant.kept_float".to_string(),
            serde_json::to_string(&kept_float).expect("strings serialize"),
        ),
    ]);
    let mut float_points = fused;
    float_points.extend(kept_float.iter().cloned());
    if opts.bias_correction {
        let mut draft = qdq::QdqEmitter::new(opts.act_type, params.clone());
        draft.float_points = float_points.clone();
        let draft = write_graph(&net, &mut draft, &metadata, "");
        bias_correction::correct(&mut net, &float_model, &draft, images, crop, run)?;
    }
    let doc = format!(
        "ResNeXt classifier, int8 {} ({} calibration, {} activations)",
        summary.format, summary.method, summary.activations
    );
    let model = match opts.format {
        Format::Qdq => {
            let mut emitter = qdq::QdqEmitter::new(opts.act_type, params);
            emitter.float_points = float_points;
            write_graph(&net, &mut emitter, &metadata, &doc)
        }
        Format::QOperator => {
            let (lo, hi) = logits_range.expect("the logits were calibrated");
            let head = qoperator::head_params(lo, hi, &net.fc_bias, opts.act_type);
            let mut emitter = qoperator::QOperatorEmitter::new(opts.act_type, params, head);
            write_graph(&net, &mut emitter, &metadata, &doc)
        }
    };
    Ok((model, summary))
}

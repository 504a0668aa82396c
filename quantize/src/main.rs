//! `resnext-quantize`: the offline command-line tool.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use resnext_edge::resnext;
use resnext_quantize::evaluate::{EvalOptions, Runtime};
use resnext_quantize::export::{self, ArchRequest, WeightSource};
use resnext_quantize::image_pass::default_jobs;
use resnext_quantize::quant::params::ActType;
use resnext_quantize::quant::ranges::Method;
use resnext_quantize::quant::{self, Format};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "resnext-quantize",
    version,
    about = "Turn ResNeXt checkpoints (mmclassification, torchvision, timm; .pth or .safetensors) into ONNX models for resnext-edge",
    after_help = "Exit codes: 0 success; 1 the job failed (the message names the file, key or shape); 2 bad command line.\nLogging: -v for progress, -vv for details, or RUST_LOG=debug."
)]
struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Debug, Default)]
struct ArchArgs {
    /// Expected architecture, a preset name (see `resnext-quantize arch`); the checkpoint must match it.
    #[arg(long, value_name = "NAME")]
    arch: Option<String>,
    /// Expected architecture as a JSON file: {"layers": [3,4,6,3], "groups", "width_per_group", "base_channels", "stem_channels", "num_classes"}.
    #[arg(long, value_name = "FILE", conflicts_with = "arch")]
    config: Option<PathBuf>,
}

/// Where the weights come from: a checkpoint file, or random weights for a preset.
#[derive(Args, Clone, Debug)]
struct WeightArgs {
    /// The checkpoint (.pth zip or legacy, .safetensors); omit with --random-weights.
    #[arg(required_unless_present = "random_weights")]
    checkpoint: Option<PathBuf>,
    /// Deterministic random weights instead of a checkpoint (needs --arch or --config).
    #[arg(long, value_name = "SEED", conflicts_with = "checkpoint")]
    random_weights: Option<u64>,
}

impl From<WeightArgs> for WeightSource {
    fn from(w: WeightArgs) -> Self {
        match (w.checkpoint, w.random_weights) {
            (_, Some(seed)) => WeightSource::Random(seed),
            (Some(p), None) => WeightSource::Checkpoint(p),
            (None, None) => unreachable!("clap requires a checkpoint or --random-weights"),
        }
    }
}

impl From<ArchArgs> for ArchRequest {
    fn from(a: ArchArgs) -> Self {
        ArchRequest {
            preset: a.arch,
            config_file: a.config,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// List the ResNeXt presets with their parameter and FLOP counts (mmcv's way of counting).
    Arch {
        /// A JSON array of {"name", "params", "flops"} (raw counts).
        #[arg(long)]
        json: bool,
    },
    /// Show what a checkpoint holds: container, key layout, inferred architecture, labels.
    Inspect {
        checkpoint: PathBuf,
        #[command(flatten)]
        arch: ArchArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write the float ONNX model of a checkpoint (BN folded), for the runtime or as a reference.
    Export {
        #[command(flatten)]
        weights: WeightArgs,
        /// Output ONNX file (written atomically).
        #[arg(short, long, value_name = "OUT.onnx")]
        output: PathBuf,
        #[command(flatten)]
        arch: ArchArgs,
        /// Class names, one per line (overrides the checkpoint's own).
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
    },
    /// Write the int8 ONNX model of a checkpoint, calibrated on a folder of images.
    Quantize {
        #[command(flatten)]
        weights: WeightArgs,
        /// Calibration images (.jpg/.jpeg/.png, searched recursively): a few dozen to a few hundred typical inputs.
        #[arg(long, value_name = "DIR")]
        calib: PathBuf,
        /// Output ONNX file (written atomically).
        #[arg(short, long, value_name = "OUT.onnx")]
        output: PathBuf,
        #[command(flatten)]
        arch: ArchArgs,
        /// Int8 layout.
        #[arg(long, value_enum, default_value = "qdq")]
        format: Format,
        /// How activation ranges are chosen from the calibration statistics.
        #[arg(long, value_enum, default_value = "mse")]
        method: Method,
        /// Element type of activations.
        #[arg(long, value_enum, default_value = "u8")]
        activations: ActType,
        /// Use N calibration images: a deterministic sample taken one class (subfolder) at a
        /// time, as from ImageNet's val/<synset>/ (a flat folder: the first N in name order).
        #[arg(long, value_name = "N")]
        calib_count: Option<usize>,
        /// Threads the calibration passes split the images across (default: every core; the
        /// model written is the same for any count).
        #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
        jobs: Option<u32>,
        /// Empirical bias correction (one shot over all convs; measured worse than none on the example model).
        #[arg(long)]
        bias_correction: bool,
        /// Activation equalization across the ReLUs inside blocks (measured no gain on the example model).
        #[arg(long)]
        equalize: bool,
        /// Leave the N most sensitive activations in float (found by quantizing one at a time).
        #[arg(long, value_name = "N", default_value_t = 0)]
        keep_float: usize,
        /// Widen every calibrated activation range by this factor, so that inputs brighter or
        /// busier than any calibration image do not saturate (1 = the calibrated range as is).
        #[arg(long, value_name = "F", default_value_t = 1.5, value_parser = parse_headroom)]
        headroom: f32,
        /// QDQ: also quantize each block's last conv output before the residual add (as
        /// onnxruntime's quantizer does) instead of requantizing once after conv + add + ReLU.
        #[arg(long)]
        quantize_residual_branch: bool,
        /// Class names, one per line (overrides the checkpoint's own).
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Preprocess images as the models expect (mmcls pipeline) into one .npy array, for other tools.
    Preprocess {
        /// Image files or directories (searched recursively, in name order).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Output .npy file: N x 3 x crop x crop float32.
        #[arg(short, long, value_name = "OUT.npy")]
        output: PathBuf,
    },
    /// Compare a model with its reference on a labelled image folder (DIR/<class>/<image>).
    Evaluate {
        /// The reference model (usually the float export).
        #[arg(long, value_name = "FLOAT.onnx")]
        reference: PathBuf,
        /// The model under test (usually the int8 model).
        #[arg(long, value_name = "INT8.onnx")]
        model: PathBuf,
        /// ImageFolder tree: class = subfolder name (one of the model's labels, or an ImageNet synset such as n01440764).
        #[arg(long, value_name = "DIR")]
        images: PathBuf,
        /// What runs the model under test: the runtime's native int8 path (as on the board) or
        /// stock tract on the file as written (the same engine for any quantizer's models).
        #[arg(long, value_enum, default_value = "native")]
        runtime: Runtime,
        /// Threads the images are split across (default: every core; the report is the same for any count).
        #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
        jobs: Option<u32>,
        /// Evaluate at most N images, taken one class at a time.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Per-layer SQNR on the first N images only (0: none); the others cost two forward passes each.
        #[arg(long, value_name = "N", default_value_t = 64)]
        layer_images: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn parse_headroom(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(f) if (1.0..=16.0).contains(&f) => Ok(f),
        Ok(_) => Err("must be between 1 and 16".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    // tract's AMX int8 matrix kernel crashes (SIGSEGV in `avx512amx_mmm_i32_8x8`) when two
    // threads run it at once, which `evaluate --jobs` does with stock int8 plans; its VNNI
    // kernels compute the same integers. A `TRACT_CPU_ISA` the user set is left as it is.
    if std::env::var_os("TRACT_CPU_ISA").is_none() {
        // SAFETY: the first statement of `main`: no other thread exists yet to read the
        // environment concurrently.
        unsafe { std::env::set_var("TRACT_CPU_ISA", "-amx-int8") };
    }
    let cli = Cli::parse();
    resnext_edge::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Arch { json } => list_presets(json),
        Command::Inspect {
            checkpoint,
            arch,
            json,
        } => inspect(checkpoint, arch.into(), json),
        Command::Export {
            weights,
            output,
            arch,
            labels,
        } => run_export(weights.into(), arch.into(), labels, output),
        Command::Quantize {
            weights,
            calib,
            output,
            arch,
            format,
            method,
            activations,
            calib_count,
            jobs,
            bias_correction,
            equalize,
            keep_float,
            headroom,
            quantize_residual_branch,
            labels,
            json,
            quiet,
        } => {
            let opts = quant::Options {
                method,
                act_type: activations,
                format,
                calib_count,
                bias_correction,
                equalize,
                keep_float,
                headroom,
                fuse_residual: !quantize_residual_branch,
                jobs: jobs.map_or_else(default_jobs, |j| j as usize),
                quiet,
            };
            run_quantize(
                weights.into(),
                arch.into(),
                labels,
                &calib,
                &opts,
                output,
                json,
            )
        }
        Command::Preprocess { images, output } => run_preprocess(&images, &output),
        Command::Evaluate {
            reference,
            model,
            images,
            runtime,
            jobs,
            limit,
            layer_images,
            json,
            quiet,
        } => {
            let opts = EvalOptions {
                runtime,
                jobs: jobs.map_or_else(default_jobs, |j| j as usize),
                limit,
                layer_images,
                quiet,
            };
            run_evaluate(&reference, &model, &images, &opts, json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn list_presets(json: bool) -> Result<()> {
    let presets = resnext::presets();
    if json {
        let rows: Vec<_> = presets
            .iter()
            .map(|p| serde_json::json!({ "name": p.name, "params": p.config.params(), "flops": p.config.flops(224), "config": p.config }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<18} {:>6} {:>14} {:>11} {:>9}",
            "preset", "layers", "groups x width", "params (M)", "FLOPs (G)"
        );
        for p in &presets {
            let c = &p.config;
            println!(
                "{:<18} {:>6} {:>14} {:>11.2} {:>9.2}",
                p.name,
                c.depth,
                format!("{}x{}", c.groups, c.width_per_group),
                c.params() as f64 / 1e6,
                c.flops(224) as f64 / 1e9
            );
        }
    }
    Ok(())
}

fn inspect(path: PathBuf, request: ArchRequest, json: bool) -> Result<()> {
    let source = export::load_source(&WeightSource::Checkpoint(path.clone()), &request)?;
    let ck = &source.checkpoint;
    let c = &source.config;
    if json {
        let v = serde_json::json!({
            "checkpoint": path.display().to_string(),
            "container": format!("{:?}", ck.container),
            "layout": format!("{:?}", ck.layout),
            "tensors": ck.tensors.len(),
            "sha256": ck.sha256,
            "config": c,
            "params": c.params(),
            "flops": c.flops(224),
            "labels": ck.labels,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {:?} container, {:?} keys, {} tensors",
            path.display(),
            ck.container,
            ck.layout,
            ck.tensors.len()
        );
        println!("architecture: {}", serde_json::to_string(c)?);
        println!(
            "params {:.3} M, FLOPs {:.3} G at 224x224",
            c.params() as f64 / 1e6,
            c.flops(224) as f64 / 1e9
        );
        match &ck.labels {
            Some(l) => println!(
                "labels: {} ({}, ...)",
                l.len(),
                l.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
            None => println!("labels: none in the checkpoint"),
        }
        println!("sha256: {}", ck.sha256);
    }
    Ok(())
}

fn run_export(
    weights: WeightSource,
    request: ArchRequest,
    labels: Option<PathBuf>,
    output: PathBuf,
) -> Result<()> {
    let t0 = Instant::now();
    let source = export::load_source(&weights, &request)?;
    let labels = labels.map(|p| export::read_labels(&p)).transpose()?;
    let metadata = export::metadata_for(&source, labels)?;
    let bytes = export::export_float(&source, &metadata, &output)?;
    eprintln!(
        "wrote {} (float32, {} classes, {:.2} M params, {:.1} MB) in {:.2} s",
        output.display(),
        source.config.num_classes,
        source.config.params() as f64 / 1e6,
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_quantize(
    weights: WeightSource,
    request: ArchRequest,
    labels: Option<PathBuf>,
    calib: &std::path::Path,
    opts: &quant::Options,
    output: PathBuf,
    json: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let source = export::load_source(&weights, &request)?;
    let labels = labels.map(|p| export::read_labels(&p)).transpose()?;
    let metadata = export::metadata_for(&source, labels)?;
    let (model, summary) = quant::quantize(&source, metadata, calib, opts)?;
    let bytes = resnext_quantize::onnx_builder::encode(&model);
    resnext_quantize::atomic::write_atomic(&output, &bytes)?;
    let secs = t0.elapsed().as_secs_f64();
    if json {
        let mut v = serde_json::to_value(&summary)?;
        v["output"] = output.display().to_string().into();
        v["bytes"] = bytes.len().into();
        v["seconds"] = secs.into();
        println!("{v}");
    }
    eprintln!(
        "wrote {} (int8 {}, {} activations, {} calibration on {} images{}, {} quantized tensors, {:.1} MB) in {:.1} s",
        output.display(),
        summary.format,
        summary.activations,
        summary.method,
        summary.images_used,
        if summary.images_skipped > 0 { format!(", {} skipped", summary.images_skipped) } else { String::new() },
        summary.quantized_tensors,
        bytes.len() as f64 / 1e6,
        secs
    );
    Ok(())
}

fn run_evaluate(
    reference: &std::path::Path,
    model: &std::path::Path,
    images: &std::path::Path,
    opts: &EvalOptions,
    json: bool,
) -> Result<()> {
    let r = resnext_quantize::evaluate::evaluate(reference, model, images, opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let pct = |v: f64| format!("{:.1} %", v * 100.0);
    println!(
        "images            {}{}",
        r.images,
        if r.skipped > 0 {
            format!(" ({} unreadable, skipped)", r.skipped)
        } else {
            String::new()
        }
    );
    println!("                  {:>10} {:>10}", "reference", "model");
    println!(
        "top-1 accuracy    {:>10} {:>10}",
        pct(r.reference_accuracy),
        pct(r.model_accuracy)
    );
    println!(
        "top-5 accuracy    {:>10} {:>10}",
        pct(r.reference_top5),
        pct(r.model_top5)
    );
    println!("top-1 agreement   {}", pct(r.agreement));
    println!("logit cosine      {:.5}", r.cosine);
    println!("logit SQNR        {:.2} dB", r.sqnr_db);
    println!("  per image        {:.2} dB (median)", r.sqnr_db_median);
    println!(
        "model ran on      {} ({} jobs, {:.1} images/s)",
        r.model_runtime, r.jobs, r.images_per_s
    );
    if !r.worst_layers.is_empty() {
        println!("layers losing the most (first {} images):", r.layer_images);
        for l in &r.worst_layers {
            println!("  {:<28} {:.2} dB", l.layer, l.sqnr_db);
        }
    }
    Ok(())
}

fn run_preprocess(paths: &[PathBuf], output: &std::path::Path) -> Result<()> {
    let (files, missing) = resnext_edge::inputs::collect(paths);
    if let Some((p, e)) = missing.first() {
        anyhow::bail!("{}: {e}", p.display());
    }
    let mut pre = resnext_edge::preprocess::Preprocessor::new(Default::default());
    let mut data = Vec::new();
    for f in &files {
        let img = resnext_edge::preprocess::decode_file(f)?;
        data.extend(pre.preprocess(&img));
    }
    if files.is_empty() {
        anyhow::bail!("no images found");
    }
    let crop = pre.config().crop;
    resnext_quantize::atomic::write_atomic(
        output,
        &resnext_quantize::npy::encode(&[files.len(), 3, crop, crop], &data),
    )?;
    eprintln!("wrote {} ({} images)", output.display(), files.len());
    Ok(())
}

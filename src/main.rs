//! `resnext-edge`: the command-line runtime.

use anyhow::Context;
use clap::{Parser, Subcommand};
use resnext_edge::classify::{format_text, Classifier};
use resnext_edge::inputs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes: what a script can tell from them.
mod exit {
    /// Some inputs could not be processed; the others were.
    pub const PARTIAL: u8 = 1;
    /// Nothing could be done: the model or every input is unusable.
    pub const FATAL: u8 = 3;
}

#[derive(Parser)]
#[command(
    name = "resnext-edge",
    version,
    about = "Classify images with a ResNeXt ONNX model (float or int8) on small boards",
    after_help = "Exit codes: 0 success; 1 some inputs failed (the others were processed); 2 bad command line; 3 nothing could be done (model unusable, no inputs).\nLogging: -v for progress, -vv for details, or RUST_LOG=debug."
)]
struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify image files, or every .jpg/.jpeg/.png under directories (recursively).
    Classify {
        /// ONNX model (from `resnext-quantize export` or `quantize`).
        model: PathBuf,
        /// Image files or directories.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, short = 'k', default_value_t = 5)]
        top_k: usize,
        /// One JSON object per line: {"image", "top": [{"index", "label", "score"}], "latency_ms", ...}.
        #[arg(long)]
        json: bool,
        /// Also print the raw logits.
        #[arg(long)]
        logits: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    resnext_edge::logging::init(cli.verbose);
    match cli.command {
        Command::Classify {
            model,
            images,
            top_k,
            json,
            logits,
        } => classify(&model, &images, top_k, json, logits),
    }
}

fn classify(
    model: &std::path::Path,
    paths: &[PathBuf],
    k: usize,
    json: bool,
    keep_logits: bool,
) -> ExitCode {
    let mut classifier = match Classifier::load(model).context("cannot load the model") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::FATAL);
        }
    };
    let (files, missing) = inputs::collect(paths);
    let mut failed = missing.len();
    for (p, e) in &missing {
        report_failure(
            json,
            &p.display().to_string(),
            &format!("{}: {e}", p.display()),
        );
    }
    if files.is_empty() {
        eprintln!(
            "error: no images found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(exit::FATAL);
    }
    let mut done = 0usize;
    for f in &files {
        match classifier.classify_file(f, k, keep_logits) {
            Ok(c) => {
                done += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&c).expect("plain data serializes")
                    );
                } else {
                    println!("{}", format_text(&c));
                }
            }
            Err(e) => {
                failed += 1;
                report_failure(json, &f.display().to_string(), &format!("{e:#}"));
            }
        }
    }
    log::info!("{done} images classified, {failed} failed");
    match (done, failed) {
        (_, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(exit::FATAL),
        _ => ExitCode::from(exit::PARTIAL),
    }
}

/// A failed input: on stderr always, and as a JSON line too when the output is JSON, so that a
/// machine reading stdout sees every input accounted for.
fn report_failure(json: bool, image: &str, message: &str) {
    eprintln!("error: {message}");
    if json {
        println!(
            "{}",
            serde_json::json!({ "image": image, "error": message })
        );
    }
}

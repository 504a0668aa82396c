//! `resnext-edge classify`: images and folders of images through the model, one line (text or
//! JSON) per image; an image that cannot be read is reported and the others still run.

use super::{exit, Kernels};
use anyhow::Context;
use resnext_edge::classify::{format_text, Classifier};
use resnext_edge::inputs;
use resnext_edge::model::Model;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(
    model: &std::path::Path,
    paths: &[PathBuf],
    k: usize,
    json: bool,
    keep_logits: bool,
    kernels: Kernels,
) -> ExitCode {
    let loaded = Model::load_with(model, kernels.backend()).map(Classifier::new);
    let mut classifier = match loaded.context("cannot load the model") {
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
                    out!(
                        "{}",
                        serde_json::to_string(&c).expect("plain data serializes")
                    );
                } else {
                    out!("{}", format_text(&c));
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
        out!(
            "{}",
            serde_json::json!({ "image": image, "error": message })
        );
    }
}

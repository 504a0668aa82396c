//! Calibration and evaluation split across threads give what one thread gives: the model written
//! byte for byte (every pass: histograms, sensitivity, bias correction, equalization), the
//! evaluation report value for value; `--calib-count` samples one class at a time; `evaluate`
//! runs the int8 model on the runtime's native path and probes layers only on the first
//! `--layer-images` images.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::fixtures;
use std::path::{Path, PathBuf};
use std::process::Command;

fn quantize(dir: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
    std::fs::read(common::quantize_trained(dir, name, extra)).unwrap()
}

#[test]
fn every_calibration_pass_writes_the_same_model_on_one_or_three_threads() {
    let dir = tempfile::tempdir().unwrap();
    // Every pass at once (histograms, sensitivity, bias correction, equalization), then the
    // other layout; 8 images keep the sensitivity pass short.
    for extra in [
        &["--keep-float", "2", "--bias-correction", "--equalize"][..],
        &["--format", "qoperator"],
    ] {
        let run = |jobs: &str, name: &str| {
            let args = [&["--calib-count", "8", "--jobs", jobs][..], extra].concat();
            quantize(dir.path(), name, &args)
        };
        assert!(
            run("1", "one.onnx") == run("3", "three.onnx"),
            "{extra:?}: the models differ"
        );
    }
}

/// `a/`, `b/` and `c/` holding 3, 1 and 2 of the calibration images; the files of each.
fn class_folders(root: &Path) -> Vec<Vec<PathBuf>> {
    let calib = fixtures().join("trained/calib");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&calib)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sources.sort();
    let mut next = sources.into_iter();
    [("a", 3), ("b", 1), ("c", 2)]
        .iter()
        .map(|(class, n)| {
            let d = root.join(class);
            std::fs::create_dir_all(&d).unwrap();
            (0..*n)
                .map(|i| {
                    let to = d.join(format!("{i}.jpg"));
                    std::fs::copy(next.next().unwrap(), &to).unwrap();
                    to
                })
                .collect()
        })
        .collect()
}

#[test]
fn calib_count_takes_one_image_of_each_class_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let classes = class_folders(&dir.path().join("calib"));
    // The sample of 4 is a/0, b/0, c/0, a/1: the same model as a folder holding just those.
    let picked = dir.path().join("picked");
    std::fs::create_dir_all(&picked).unwrap();
    for (i, f) in [
        &classes[0][0],
        &classes[1][0],
        &classes[2][0],
        &classes[0][1],
    ]
    .iter()
    .enumerate()
    {
        std::fs::copy(f, picked.join(format!("{i}.jpg"))).unwrap();
    }
    let run = |calib: &Path, extra: &[&str], out: &str| {
        let out = dir.path().join(out);
        let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
            .arg("quantize")
            .arg(fixtures().join("trained/mmcls.pth"))
            .arg("--calib")
            .arg(calib)
            .args(["-q", "--json", "-o"])
            .arg(&out)
            .args(extra)
            .output_within(DEADLINE);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (std::fs::read(out).unwrap(), summary)
    };
    let (sampled, summary) = run(&dir.path().join("calib"), &["--calib-count", "4"], "s.onnx");
    assert_eq!(summary["images_used"], 4, "{summary}");
    let (whole, _) = run(&picked, &[], "p.onnx");
    // Only the recorded image count could differ, and it does not: the same bytes.
    assert!(sampled == whole, "the sample is not a/0, b/0, c/0, a/1");
}

fn evaluate(jobs: &str, extra: &[&str]) -> serde_json::Value {
    evaluate_model(&[], jobs, extra)
}

/// `evaluate` of the trained model quantized with `quantize` (flags) against its float export.
fn evaluate_model(quantize: &[&str], jobs: &str, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let float = common::export_float(&fixtures().join("trained/mmcls.pth"), dir.path());
    let int8 = common::quantize_trained(dir.path(), "int8.onnx", quantize);
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .args(["evaluate", "--json", "-q", "--jobs", jobs, "--reference"])
        .arg(&float)
        .arg("--model")
        .arg(&int8)
        .arg("--images")
        .arg(fixtures().join("trained/eval"))
        .args(extra)
        .output_within(DEADLINE);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn evaluate_reports_the_same_on_one_or_three_threads() {
    let args = ["--limit", "60", "--layer-images", "7"];
    let (mut one, mut three) = (evaluate("1", &args), evaluate("3", &args));
    assert_eq!(one["images"], 60, "{one}");
    assert_eq!(one["layer_images"], 7, "{one}");
    assert_eq!(one["worst_layers"].as_array().unwrap().len(), 5, "{one}");
    let runtime = one["model_runtime"].as_str().unwrap();
    assert!(runtime.starts_with("native ("), "{runtime}");
    assert!(one["images_per_s"].as_f64().unwrap() > 0.0, "{one}");
    for r in [&mut one, &mut three] {
        let m = r.as_object_mut().unwrap();
        m.remove("images_per_s");
        m.remove("jobs");
    }
    assert_eq!(one, three);
}

#[test]
fn evaluate_without_layer_probes_reports_no_layers() {
    let r = evaluate("2", &["--layer-images", "0", "--limit", "20"]);
    assert_eq!(r["layer_images"], 0, "{r}");
    assert_eq!(r["worst_layers"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["images"], 20, "{r}");
}

#[test]
fn evaluate_on_stock_tract_reports_the_same_on_one_or_three_threads() {
    // Integer operators on stock tract, several threads at once (tract's AMX int8 kernel
    // crashed so; the tool keeps tract on its VNNI kernels).
    let q = ["--format", "qoperator"];
    let args = ["--runtime", "stock", "--layer-images", "4"];
    let (mut one, mut three) = (
        evaluate_model(&q, "1", &args),
        evaluate_model(&q, "3", &args),
    );
    assert_eq!(one["model_runtime"], "stock tract", "{one}");
    assert_eq!(one["images"], 200, "{one}");
    for r in [&mut one, &mut three] {
        let m = r.as_object_mut().unwrap();
        m.remove("images_per_s");
        m.remove("jobs");
    }
    assert_eq!(one, three);
}

//! `resnext-quantize quantize` and `evaluate` on the trained fixture model: fidelity of the
//! default settings, determinism, every method and layout, and bad calibration input.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::{argmax, fixtures, ort_logits, quantize_cmd};
use resnext_edge::model::Model;
use resnext_edge::preprocess::{decode_file, Preprocessor};
use resnext_quantize::npy;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quantize(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    common::quantize_trained(dir, name, extra)
}

fn float_model(dir: &Path) -> PathBuf {
    common::export_float(&fixtures().join("trained/mmcls.pth"), dir)
}

fn evaluate(reference: &Path, model: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .args(["evaluate", "--json", "--quiet", "--reference"])
        .arg(reference)
        .arg("--model")
        .arg(model)
        .arg("--images")
        .arg(fixtures().join("trained/eval"))
        .output_within(DEADLINE);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn default_settings_keep_the_float_models_answers() {
    let dir = tempfile::tempdir().unwrap();
    let float = float_model(dir.path());
    let int8 = quantize(dir.path(), "int8.onnx", &[]);
    let r = evaluate(&float, &int8);
    for key in [
        "images",
        "reference_accuracy",
        "model_accuracy",
        "reference_top5",
        "model_top5",
        "agreement",
        "sqnr_db",
        "worst_layers",
    ] {
        assert!(r.get(key).is_some(), "no `{key}` in {r}");
    }
    assert_eq!(r["images"], 200);
    assert!(
        (r["reference_accuracy"].as_f64().unwrap() - 0.88).abs() < 0.006,
        "{r}"
    );
    assert!(r["agreement"].as_f64().unwrap() >= 0.985, "{r}");
    assert!(r["model_accuracy"].as_f64().unwrap() >= 0.875, "{r}");
    // onnxruntime's quantizer reaches 23.0 dB (minmax) and 22.2 dB (percentile) on this set.
    assert!(r["sqnr_db"].as_f64().unwrap() >= 26.0, "{r}");
    assert_eq!(r["worst_layers"].as_array().unwrap().len(), 5);
}

#[test]
fn same_inputs_give_byte_identical_models() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["qdq", "qoperator"] {
        let args = ["--calib-count", "8", "--format", format];
        let a = quantize(dir.path(), "a.onnx", &args);
        let b = quantize(dir.path(), "b.onnx", &args);
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{format}"
        );
    }
}

fn every_method(method: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model_path = quantize(
        dir.path(),
        "m.onnx",
        &["--method", method, "--calib-count", "8"],
    );
    let (npy_path, inputs) = {
        let mut pre = Preprocessor::new(Default::default());
        let x = pre.preprocess(&decode_file(&fixtures().join("images/chelsea.jpg")).unwrap());
        let p = dir.path().join("one.npy");
        std::fs::write(&p, npy::encode(&[1, 3, 224, 224], &x)).unwrap();
        (p, x)
    };
    let mut ours = Model::load(&model_path).unwrap();
    let logits = ours.run(&inputs).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    assert_eq!(ours.metadata().extra("quant.method"), Some(method));
    let theirs = ort_logits(&model_path, &npy_path, dir.path());
    assert_eq!(argmax(&logits), argmax(theirs.row(0)), "{method}");
}

#[test]
fn method_minmax_writes_a_valid_model() {
    every_method("minmax");
}

#[test]
fn method_percentile_writes_a_valid_model() {
    every_method("percentile");
}

#[test]
fn method_entropy_writes_a_valid_model() {
    every_method("entropy");
}

#[test]
fn method_mse_writes_a_valid_model() {
    every_method("mse");
}

fn fails_with(out: &Path, o: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expect), "`{expect}` not in {stderr}");
    assert!(!out.exists(), "an output file was left behind");
}

#[test]
fn bad_calibration_folders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let run = |calib: &Path| {
        Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
            .arg("quantize")
            .arg(fixtures().join("trained/mmcls.pth"))
            .arg("--calib")
            .arg(calib)
            .arg("-o")
            .arg(&out)
            .arg("-q")
            .output_within(DEADLINE)
    };
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(&out, &run(&empty), "no images");
    fails_with(&out, &run(&dir.path().join("missing")), "does not exist");
    let junk = dir.path().join("junk");
    std::fs::create_dir(&junk).unwrap();
    std::fs::write(junk.join("a.jpg"), b"\xff\xd8\xff\xe0 not a jpeg").unwrap();
    std::fs::write(junk.join("b.png"), b"not a png").unwrap();
    fails_with(&out, &run(&junk), "none of the 2 images");
}

#[test]
fn unreadable_calibration_images_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let calib = dir.path().join("calib");
    std::fs::create_dir(&calib).unwrap();
    for f in ["000.jpg", "001.jpg", "002.jpg"] {
        std::fs::copy(fixtures().join("trained/calib").join(f), calib.join(f)).unwrap();
    }
    std::fs::write(calib.join("003.jpg"), b"\xff\xd8\xff truncated").unwrap();
    let out = dir.path().join("m.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .arg("quantize")
        .arg(fixtures().join("trained/mmcls.pth"))
        .arg("--calib")
        .arg(&calib)
        .args(["-q", "--json", "-o"])
        .arg(&out)
        .output_within(DEADLINE);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["images_used"], 3);
    assert_eq!(summary["images_skipped"], 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("003.jpg"));
    assert!(out.exists());
}

#[test]
fn unwritable_output_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no-such-dir/m.onnx");
    let o = quantize_cmd(&out, &["--calib-count", "2"]);
    fails_with(&out, &o, "cannot write");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn keep_float_leaves_the_most_sensitive_activations_unquantized() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.onnx");
    let o = quantize_cmd(&out, &["--calib-count", "4", "--keep-float", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kept: Vec<String> = summary["kept_float"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept.len(), 2);
    let model = Model::load(&out).unwrap();
    let recorded: Vec<String> =
        serde_json::from_str(model.metadata().extra("quant.kept_float").unwrap()).unwrap();
    assert_eq!(recorded, kept);
    // The kept tensors have no quantize/dequantize pair in the graph.
    let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(
        std::fs::read(&out).unwrap().as_slice(),
    )
    .unwrap();
    let outputs: Vec<&String> = proto
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .collect();
    for k in &kept {
        assert!(
            !outputs.iter().any(|o| **o == format!("{k}.dq")),
            "{k} is still quantized"
        );
    }
    assert!(
        outputs.iter().filter(|o| o.ends_with(".dq")).count() > 40,
        "the other activations are quantized"
    );
}

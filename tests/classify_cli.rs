//! `resnext-edge classify` end to end through the binary: text and JSON output, labels from the
//! model's metadata, directory walking, a corrupt image among good ones, exit codes.
//!
//! The model is a real ONNX file run by tract, built here so that the runtime crate tests on its
//! own: per-channel mean of the image (GlobalAveragePool) into a 3-class linear layer that
//! scores "red", "green", "blue". The ResNeXt models themselves are tested in the quantizer's
//! tests, which write them.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::{colour_model, json_lines, ScratchDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Setup {
    _dir: ScratchDir,
    root: PathBuf,
    model: PathBuf,
}

fn setup() -> Setup {
    let dir = ScratchDir::new().unwrap();
    let root = dir.path().to_path_buf();
    let model = root.join("colours.onnx");
    colour_model(&model);
    std::fs::create_dir_all(root.join("imgs/sub")).unwrap();
    image::RgbImage::from_pixel(320, 240, image::Rgb([250, 10, 10]))
        .save(root.join("imgs/red.png"))
        .unwrap();
    image::RgbImage::from_pixel(300, 400, image::Rgb([10, 10, 250]))
        .save(root.join("imgs/sub/blue.png"))
        .unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/rocket.jpg");
    std::fs::copy(photo, root.join("imgs/sub/rocket.jpg")).unwrap();
    Setup {
        _dir: dir,
        root,
        model,
    }
}

fn classify(args: &[&Path], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resnext-edge"))
        .arg("classify")
        .args(args)
        .args(extra)
        .output_within(DEADLINE)
}

#[test]
fn json_lines_with_labels_from_the_model() {
    let s = setup();
    let o = classify(
        &[&s.model, &s.root.join("imgs")],
        &["--json", "--top-k", "2", "--logits"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["image"]
        .as_str()
        .unwrap()
        .ends_with("imgs/red.png"));
    assert_eq!(lines[0]["top"][0]["label"], "red");
    assert_eq!(lines[0]["top"][0]["index"], 0);
    assert_eq!(lines[0]["top"].as_array().unwrap().len(), 2);
    assert!(lines[0]["top"][0]["score"].as_f64().unwrap() > 0.9);
    assert!(lines[0]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[0]["logits"].as_array().unwrap().len(), 3);
    assert!(lines[1]["image"]
        .as_str()
        .unwrap()
        .ends_with("imgs/sub/blue.png"));
    assert_eq!(lines[1]["top"][0]["label"], "blue");
    assert!(lines[2]["image"]
        .as_str()
        .unwrap()
        .ends_with("imgs/sub/rocket.jpg"));
    assert_eq!(lines[2]["top"].as_array().unwrap().len(), 2);
}

#[test]
fn text_output_by_default() {
    let s = setup();
    let o = classify(&[&s.model, &s.root.join("imgs/red.png")], &["-k", "1"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("red.png: red ("), "{text}");
    assert!(text.contains(" ms]"), "{text}");
}

#[test]
fn a_corrupt_image_among_good_ones_is_reported_and_the_others_run() {
    let s = setup();
    let bad = s.root.join("imgs/broken.jpg");
    let mut bytes = std::fs::read(s.root.join("imgs/sub/rocket.jpg")).unwrap();
    bytes.truncate(200);
    std::fs::write(&bad, bytes).unwrap();
    let o = classify(&[&s.model, &s.root.join("imgs")], &["--json"]);
    assert_eq!(o.status.code(), Some(1), "partial failure exits 1");
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 4);
    let errors: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["image"].as_str().unwrap().ends_with("broken.jpg"));
    assert_eq!(lines.iter().filter(|l| l.get("top").is_some()).count(), 3);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("broken.jpg"), "{stderr}");
}

#[test]
fn missing_inputs_and_models_have_their_own_exit_codes() {
    let s = setup();
    let o = classify(
        &[
            &s.model,
            &s.root.join("imgs/red.png"),
            &s.root.join("nope.png"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.png"));

    let o = classify(&[&s.root.join("missing.onnx"), &s.root.join("imgs")], &[]);
    assert_eq!(o.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("missing.onnx"), "{stderr}");

    let o = classify(&[&s.root.join("imgs/red.png"), &s.root.join("imgs")], &[]);
    assert_eq!(o.status.code(), Some(3), "a PNG is not a model");
    assert!(String::from_utf8_lossy(&o.stderr).contains("red.png"));
}

#[test]
fn a_model_whose_weight_claims_a_terabyte_is_refused_before_allocation() {
    let s = setup();
    let model = s.root.join("huge.onnx");
    common::colour_model_edited(&model, |m| {
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        w.dims = vec![1 << 20, 1 << 20];
    });
    let o = classify(&[&model, &s.root.join("imgs/red.png")], &[]);
    assert_eq!(o.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("huge.onnx") && stderr.contains("tensor `w` of shape [1048576, 1048576]"),
        "{stderr}"
    );

    common::colour_model_edited(&model, |m| {
        m.metadata_props
            .push(tract_onnx::pb::StringStringEntryProto {
                key: "resnext_edge.resize".into(),
                value: "1000000".into(),
            });
    });
    let o = classify(&[&model, &s.root.join("imgs/red.png")], &[]);
    assert_eq!(o.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("above the supported 4096"), "{stderr}");
}

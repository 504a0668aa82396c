//! `export --random-weights` for a full-size preset writes a model that loads and runs.

use resnext_edge::model::Model;
mod common;

use common::deadline::{Deadline, DEADLINE};
use std::process::Command;

#[test]
fn resnext50_with_random_weights_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let export = |out: &std::path::Path| {
        let st = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
            .args([
                "export",
                "--arch",
                "resnext50_32x4d",
                "--random-weights",
                "0",
                "-o",
            ])
            .arg(out)
            .status_within(DEADLINE);
        assert!(st.success());
    };
    let out = dir.path().join("r50.onnx");
    let again = dir.path().join("again.onnx");
    export(&out);
    export(&again);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(),
        "same seed, different bytes"
    );

    let mut model = Model::load(&out).unwrap();
    assert_eq!(model.num_classes(), 1000);
    let input: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
        .collect();
    let logits = model.run(&input).unwrap();
    assert_eq!(logits.len(), 1000);
    assert!(logits.iter().all(|v| v.is_finite()));
    let spread = logits.iter().cloned().fold(f32::MIN, f32::max)
        - logits.iter().cloned().fold(f32::MAX, f32::min);
    assert!(
        spread > 1e-3,
        "logits do not depend on the class: spread {spread}"
    );
}

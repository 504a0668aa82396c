//! Whole int8 models of both quantizers on the runtime's native path: ours and onnxruntime's,
//! both layouts, u8 activations, against stock tract on the same files, on the trained model's
//! 200 held-out images (the runtime's own tests check each rewrite pattern on a small graph:
//! `tests/native_patterns.rs`). The native ops requantize once where stock tract rounds twice
//! (conv output, then the residual add), so logits may differ by a few quantization steps, not
//! more.

mod common;

use common::{argmax, eval_inputs, ort_quantized, quantize_trained};
use resnext_edge::model::{Backend, Model};
use std::path::{Path, PathBuf};

/// `(top-1 agreement, largest logit difference, largest logit magnitude)` of native vs stock.
fn compare(model: &Path, inputs: &[Vec<f32>]) -> (usize, f32, f32) {
    let mut native = Model::load_with(model, Backend::Native).unwrap();
    let mut stock = Model::load_with(model, Backend::Stock).unwrap();
    assert!(
        native.native_ops() >= 50,
        "{}: only {} layers on the native path",
        model.display(),
        native.native_ops()
    );
    assert_eq!(stock.native_ops(), 0);
    let (mut same, mut diff, mut scale) = (0, 0f32, 0f32);
    for x in inputs {
        let (a, b) = (native.run(x).unwrap(), stock.run(x).unwrap());
        same += (argmax(&a) == argmax(&b)) as usize;
        diff = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(diff, f32::max);
        scale = b.iter().map(|v| v.abs()).fold(scale, f32::max);
    }
    (same, diff, scale)
}

#[test]
fn native_and_stock_agree_on_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (_, inputs) = eval_inputs(dir.path());
    let mut models: Vec<(String, PathBuf)> = ["qdq", "qoperator"]
        .iter()
        .map(|f| {
            let m = quantize_trained(dir.path(), &format!("ours_{f}.onnx"), &["--format", f]);
            (format!("ours {f}"), m)
        })
        .collect();
    let layouts = [("qdq", "u8"), ("qoperator", "u8")];
    for ((f, _), m) in layouts.iter().zip(ort_quantized(dir.path(), &layouts)) {
        models.push((format!("onnxruntime's {f}"), m));
    }
    for (name, m) in &models {
        let (same, diff, scale) = compare(m, &inputs);
        eprintln!(
            "{name}: top-1 {same}/200, max logit difference {diff:.4} (logits up to {scale:.2})"
        );
        assert!(
            same >= 198,
            "{name}: native and stock agree on {same} of 200"
        );
        assert!(
            diff <= 0.02 * scale,
            "{name}: logits differ by {diff} (scale {scale})"
        );
    }
}

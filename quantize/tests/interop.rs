//! onnxruntime and resnext-edge on each other's int8 models, in both layouts (QDQ and
//! QOperator) and both activation types: onnxruntime runs ours with the same answers as our
//! runtime, and our runtime runs the ones onnxruntime's own quantizer writes (with its
//! `com.microsoft` operators) with the answers onnxruntime gives.

mod common;

use common::{argmax, eval_inputs, ort_logits, ort_quantized, quantize_trained};
use resnext_edge::model::Model;
use std::path::Path;

const LAYOUTS: [(&str, &str); 4] = [
    ("qdq", "u8"),
    ("qdq", "s8"),
    ("qoperator", "u8"),
    ("qoperator", "s8"),
];

/// On how many of the inputs our runtime's top-1 equals onnxruntime's on the same file.
fn top1_agreement(model_path: &Path, npy_path: &Path, inputs: &[Vec<f32>], dir: &Path) -> usize {
    let theirs = ort_logits(model_path, npy_path, dir);
    let mut ours = Model::load(model_path)
        .unwrap_or_else(|e| panic!("resnext-edge cannot load {}: {e}", model_path.display()));
    inputs
        .iter()
        .enumerate()
        .filter(|(i, x)| argmax(&ours.run(x).unwrap()) == argmax(theirs.row(*i)))
        .count()
}

#[test]
fn onnxruntime_runs_our_int8_models_as_we_do() {
    let dir = tempfile::tempdir().unwrap();
    let (npy_path, inputs) = eval_inputs(dir.path());
    for (format, act) in LAYOUTS {
        let model = quantize_trained(
            dir.path(),
            &format!("{format}_{act}.onnx"),
            &["--format", format, "--activations", act],
        );
        let same = top1_agreement(&model, &npy_path, &inputs, dir.path());
        eprintln!("ours, {format} {act}: top-1 agreement {same}/200");
        assert!(
            same >= 198,
            "{format} {act}: onnxruntime and resnext-edge agree on {same} of 200"
        );
    }
}

#[test]
fn we_run_onnxruntimes_int8_models_as_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let (npy_path, inputs) = eval_inputs(dir.path());
    let models = ort_quantized(dir.path(), &LAYOUTS);
    for ((format, act), model) in LAYOUTS.iter().zip(&models) {
        let same = top1_agreement(model, &npy_path, &inputs, dir.path());
        eprintln!("onnxruntime's, {format} {act}: top-1 agreement {same}/200");
        assert!(
            same >= 196,
            "{format} {act}: resnext-edge and onnxruntime agree on {same} of 200"
        );
    }
}

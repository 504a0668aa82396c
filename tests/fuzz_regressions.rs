//! Inputs the fuzz targets (`fuzz/`) found crashing, kept as tests: each must now give a clear
//! error, never a panic. Files under `tests/fixtures/fuzz/TARGET/`, named after what they found.

use resnext_edge::model::{Backend, Model};
use std::path::PathBuf;

fn found(target: &str, name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `onnx_model`: a native convolution whose residual input had another shape than its output
/// (a mutated name wired a 28x28 activation into a 14x14 layer). It asserted at the first run;
/// now the model does not load and the error names the layer and both shapes.
#[test]
fn a_residual_of_the_wrong_shape_is_a_load_error_not_a_panic() {
    let bytes = found("onnx_model", "native_conv_input_mismatch.onnx");
    let e = Model::from_bytes(&bytes, "found.onnx", Backend::Native).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("layer3.0.conv3.native")
            && e.contains("residual is 1,28,28,32, its output [1, 14, 14, 64]"),
        "{e}"
    );
}

/// `onnx_model`: a `Conv` node with no output (a mutated length prefix). The rewrite pass read
/// `output[0]` of every candidate; it now reads nothing it has not checked, leaves such a node
/// to tract, and tract names the value nothing produces.
#[test]
fn a_conv_without_an_output_is_a_load_error_not_a_panic() {
    let bytes = found("onnx_model", "conv_without_output.onnx");
    let e = Model::from_bytes(&bytes, "found.onnx", Backend::Native).unwrap_err();
    assert!(e.to_string().contains("Could not resolve inputs"), "{e}");
}

/// `onnx_model`: a `Conv` whose `pads` attribute has one value instead of four; tract indexed
/// the missing ones and panicked. The window attributes are now checked before tract sees
/// them (and a panic inside tract would be contained as an error anyway).
#[test]
fn conv_pads_of_one_value_are_a_load_error_not_a_panic() {
    let bytes = found("onnx_model", "conv_pads_of_one_value.onnx");
    let e = Model::from_bytes(&bytes, "found.onnx", Backend::Native).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("Conv node `layer3.0.conv3`: `pads` has 1 values, expected 4"),
        "{e}"
    );
}

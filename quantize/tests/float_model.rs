//! The exported float model against PyTorch's logits and onnxruntime, and the runtime's
//! preprocessing against the mmcls pipeline's tensors.

mod common;

use common::{export_float, fixtures, max_abs_diff, ort_logits};
use prost::Message;
use resnext_edge::model::Model;
use resnext_edge::preprocess::{decode_file, Preprocessor};
use resnext_quantize::npy;

fn photo_names() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("tiny/inputs.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn float_model_matches_pytorch_on_reference_inputs_and_photos() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = export_float(&fixtures().join("tiny/mmcls.pth"), dir.path());
    let inputs = npy::read(&fixtures().join("tiny/inputs.npy")).unwrap();
    let expected = npy::read(&fixtures().join("tiny/logits.npy")).unwrap();
    assert_eq!(inputs.shape, vec![12, 3, 224, 224]);
    let mut model = Model::load(&onnx).unwrap();
    let mut worst_direct = 0f32;
    for i in 0..12 {
        let logits = model.run(inputs.row(i)).unwrap();
        worst_direct = worst_direct.max(max_abs_diff(&logits, expected.row(i)));
    }
    assert!(
        worst_direct <= 1e-3,
        "logits on inputs.npy differ from PyTorch by {worst_direct}"
    );

    let mut pre = Preprocessor::new(model.metadata().preprocessing.clone());
    let mut worst_photo = 0f32;
    for (i, name) in photo_names().iter().enumerate() {
        let img = decode_file(&fixtures().join("images").join(name)).unwrap();
        let logits = model.run(&pre.preprocess(&img)).unwrap();
        worst_photo = worst_photo.max(max_abs_diff(&logits, expected.row(i)));
    }
    assert!(
        worst_photo <= 0.02,
        "logits from the photos differ from PyTorch by {worst_photo}"
    );
}

#[test]
fn onnxruntime_agrees_with_the_runtime_on_our_float_model() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = export_float(&fixtures().join("tiny/mmcls.pth"), dir.path());
    let inputs_path = fixtures().join("tiny/inputs.npy");
    let inputs = npy::read(&inputs_path).unwrap();
    let theirs = ort_logits(&onnx, &inputs_path, dir.path());
    let mut model = Model::load(&onnx).unwrap();
    for i in 0..12 {
        let ours = model.run(inputs.row(i)).unwrap();
        let d = max_abs_diff(&ours, theirs.row(i));
        assert!(
            d <= 1e-3,
            "image {i}: onnxruntime and resnext-edge differ by {d}"
        );
    }
}

#[test]
fn float_model_header_and_metadata_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = fixtures().join("tiny/mmcls.pth");
    let onnx = export_float(&ckpt, dir.path());
    let proto =
        tract_onnx::pb::ModelProto::decode(std::fs::read(&onnx).unwrap().as_slice()).unwrap();
    assert!(proto.ir_version <= 8);
    assert!(proto
        .opset_import
        .iter()
        .any(|o| o.domain.is_empty() && o.version >= 13));
    let g = proto.graph.as_ref().unwrap();
    assert_eq!(g.input[0].name, "input");
    assert_eq!(g.output[0].name, "logits");
    let model = Model::load(&onnx).unwrap();
    let m = model.metadata();
    assert_eq!(m.labels.as_ref().unwrap()[3], "class_3");
    assert_eq!(m.arch.as_ref().unwrap().groups, 4);
    assert_eq!(m.preprocessing, Default::default());
    assert_eq!(
        m.source_sha256.as_deref(),
        Some(
            resnext_quantize::checkpoint::sha256_file(&ckpt)
                .unwrap()
                .as_str()
        )
    );
    assert_eq!(m.source.as_deref(), Some("mmcls.pth"));
}

#[test]
fn preprocessing_equals_the_mmcls_pipeline() {
    let inputs = npy::read(&fixtures().join("tiny/inputs.npy")).unwrap();
    let mut pre = Preprocessor::new(Default::default());
    let grey_level = 1.0 / 57.12 + 1e-5; // one grey level after the widest normalization
    let (mut same, mut total) = (0usize, 0usize);
    for (i, name) in photo_names().iter().enumerate() {
        let img = decode_file(&fixtures().join("images").join(name)).unwrap();
        let ours = pre.preprocess(&img);
        let reference = inputs.row(i);
        let d = max_abs_diff(&ours, reference);
        assert!(
            d <= grey_level,
            "{name}: differs by {d} (more than one grey level)"
        );
        let eq = ours.iter().zip(reference).filter(|(a, b)| a == b).count();
        same += eq;
        total += ours.len();
    }
    let share = same as f64 / total as f64;
    assert!(
        share >= 0.999,
        "only {:.4} % of values identical",
        share * 100.0
    );
}

//! The trained fixture model: the exported float model classifies the held-out crops as PyTorch
//! does (88.0 % top-1).

mod common;

use common::{argmax, export_float, fixtures};
use resnext_edge::classify::Classifier;
use resnext_quantize::npy;

#[test]
fn trained_float_model_reproduces_pytorch_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let trained = fixtures().join("trained");
    let onnx = export_float(&trained.join("mmcls.pth"), dir.path());
    let mut classifier = Classifier::load(&onnx).unwrap();
    let files: Vec<String> = std::fs::read_to_string(trained.join("eval.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let reference = npy::read(&trained.join("eval_logits.npy")).unwrap();
    assert_eq!(files.len(), 200);
    let (mut correct, mut agree) = (0, 0);
    for (i, f) in files.iter().enumerate() {
        let c = classifier.classify_file(&trained.join(f), 1, true).unwrap();
        let truth = f.split('/').nth(1).unwrap();
        let top = &c.top[0];
        correct += (top.label == truth) as usize;
        agree += (top.index == argmax(reference.row(i))) as usize;
    }
    let acc = correct as f64 / 200.0;
    assert!(
        (acc - 0.880).abs() < 0.0051,
        "top-1 {:.1} %, PyTorch has 88.0 %",
        acc * 100.0
    );
    assert!(
        agree >= 199,
        "agrees with PyTorch's arg-max on only {agree} of 200"
    );
}

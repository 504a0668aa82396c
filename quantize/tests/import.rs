//! Checkpoint import: every container and key layout of the fixtures gives the same tensors and
//! the same architecture.

mod common;

use common::fixtures;
use resnext_edge::resnext::ResNeXtConfig;
use resnext_quantize::checkpoint::{self, Container, KeyLayout};
use resnext_quantize::export::{load_source, ArchRequest, WeightSource};
use resnext_quantize::infer;

#[test]
fn four_containers_import_to_identical_tensors() {
    let tiny = fixtures().join("tiny");
    let mmcls = checkpoint::load(&tiny.join("mmcls.pth")).unwrap();
    assert_eq!(
        (mmcls.container, mmcls.layout),
        (Container::TorchZip, KeyLayout::MmCls)
    );
    for (file, container) in [
        ("torchvision.pth", Container::TorchZip),
        ("legacy.pth", Container::TorchLegacy),
        ("model.safetensors", Container::Safetensors),
    ] {
        let other = checkpoint::load(&tiny.join(file)).unwrap();
        assert_eq!(other.container, container, "{file}");
        assert_eq!(other.layout, KeyLayout::TorchVision, "{file}");
        assert_eq!(other.tensors.len(), mmcls.tensors.len(), "{file}");
        assert!(
            other.tensors == mmcls.tensors,
            "{file}: tensors differ from mmcls.pth"
        );
    }
    assert!(!mmcls
        .tensors
        .keys()
        .any(|k| k.contains("num_batches_tracked")));
    assert!(mmcls.tensors.contains_key("layer4.2.conv2.weight"));
    assert!(mmcls.tensors.contains_key("fc.bias"));
}

#[test]
fn inferred_config_equals_the_fixture_config() {
    let tiny = fixtures().join("tiny");
    let text = std::fs::read_to_string(tiny.join("config.json")).unwrap();
    let expected: ResNeXtConfig = serde_json::from_str(&text).unwrap();
    for file in [
        "mmcls.pth",
        "torchvision.pth",
        "legacy.pth",
        "model.safetensors",
    ] {
        let ck = checkpoint::load(&tiny.join(file)).unwrap();
        let config = infer::infer_config(&ck).unwrap();
        assert_eq!(config, expected, "{file}");
        infer::check_tensors(&ck, &config).unwrap();
    }
}

#[test]
fn mmcls_meta_classes_become_labels() {
    let ck = checkpoint::load(&fixtures().join("trained/mmcls.pth")).unwrap();
    let classes: Vec<String> = std::fs::read_to_string(fixtures().join("trained/classes.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ck.labels.as_ref(), Some(&classes));
}

#[test]
fn a_mismatched_arch_names_the_first_differing_field() {
    let req = ArchRequest {
        preset: Some("resnext50_32x4d".into()),
        config_file: None,
    };
    let path = fixtures().join("tiny/mmcls.pth");
    let err = load_source(&WeightSource::Checkpoint(path), &req)
        .err()
        .expect("must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("mmcls.pth"), "{msg}");
    assert!(
        msg.contains("groups is 4 in the checkpoint, 32 in --arch resnext50_32x4d"),
        "{msg}"
    );
}

#[test]
fn a_matching_config_file_is_accepted() {
    let req = ArchRequest {
        preset: None,
        config_file: Some(fixtures().join("tiny/config.json")),
    };
    let s = load_source(
        &WeightSource::Checkpoint(fixtures().join("tiny/legacy.pth")),
        &req,
    )
    .unwrap();
    assert_eq!(s.config.groups, 4);
}

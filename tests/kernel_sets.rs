//! Every kernel set this CPU has, forced with `RESNEXT_EDGE_KERNELS`, on a small int8 network
//! (a dense, a grouped and a pointwise convolution): `info --json` names the forced set and the
//! function that runs each convolution, and `classify --logits` gives the same bits on each.
//! A SIMD set runs grouped convolutions on a direct kernel that requantizes its own tiles (the
//! AVX-VNNI set on the AVX2 set's: it has no AVX-512 for the VNNI ones), and no set runs
//! anything of a wider ISA than its own.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::{int8_conv_model, json_lines, ScratchDir};
use resnext_edge::kernels::Isa;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `resnext-edge ARGS` with the kernel set `set` forced.
fn run(set: &str, args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-edge"))
        .args(args)
        .env("RESNEXT_EDGE_KERNELS", set)
        .output_within(DEADLINE);
    assert!(
        o.status.success(),
        "{set}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn info_names_the_forced_set_and_function_of_every_convolution() {
    let dir = ScratchDir::new().unwrap();
    let model = dir.path().join("int8.onnx");
    int8_conv_model(&model);
    let model = model.to_str().unwrap();
    for isa in Isa::available() {
        let name = isa.name();
        let info: Value = serde_json::from_slice(&run(name, &["info", model, "--json"]).stdout)
            .expect("info --json");
        assert_eq!(info["kernels"], format!("native ({name})"), "{info}");
        let convs: Vec<(&str, &str)> = info["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["op"].as_str().unwrap(), l["kernel"].as_str().unwrap()))
            .filter(|(op, _)| op.contains("3x3") || op.contains("1x1"))
            .collect();
        assert_eq!(convs.len(), 3, "{name}: {info}");
        for (op, kernel) in &convs {
            // The AMX set hands what its tiles do not take to the AVX-512 VNNI set.
            let own = kernel.starts_with(&format!("native {name}: "))
                || (isa == Isa::Amx && kernel.starts_with("native vnni: "));
            assert!(own, "{name}: {op} runs on {kernel}");
            if matches!(isa, Isa::Avx2 | Isa::AvxVnni) {
                assert!(!kernel.contains("512"), "{name}: {op} runs on {kernel}");
            }
            if matches!(isa, Isa::GenericI16 | Isa::GenericU8) {
                assert!(
                    !kernel.contains("avx") && !kernel.contains("vnni"),
                    "{kernel}"
                );
            }
            let simd = !matches!(isa, Isa::GenericI16 | Isa::GenericU8 | Isa::Armv7Neon);
            if simd && op.contains("grouped") {
                assert!(
                    kernel.contains("direct_u8_requant"),
                    "{name}: {op} runs on {kernel}"
                );
            }
        }
        if isa == Isa::AvxVnni {
            let grouped = convs.iter().find(|(op, _)| op.contains("grouped")).unwrap();
            assert_eq!(grouped.1, "native avx-vnni: direct_u8_requant_avx2");
        }
    }
}

#[test]
fn every_kernel_set_gives_the_same_logits() {
    let dir = ScratchDir::new().unwrap();
    let model = dir.path().join("int8.onnx");
    int8_conv_model(&model);
    let model = model.to_str().unwrap();
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/images");
    let images = images.to_str().unwrap();
    let logits = |set: &str| -> Vec<Value> {
        let o = run(set, &["classify", model, images, "--json", "--logits"]);
        json_lines(&o).iter().map(|l| l["logits"].clone()).collect()
    };
    let want = logits("generic-i16");
    assert_eq!(want.len(), 5);
    assert!(want
        .iter()
        .all(|l| l.as_array().is_some_and(|a| a.len() == 32)));
    for isa in Isa::available() {
        assert_eq!(logits(isa.name()), want, "{}", isa.name());
    }
}

//! Bad input to `export`: each gives a non-zero exit, one line naming the file, key or shapes,
//! and leaves no output file behind.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::fixtures;
use std::path::Path;
use std::process::Command;

/// Runs `export` with `args` into an empty directory; returns the error line.
fn export_fails(args: &[&str], expect: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .arg("export")
        .args(args)
        .arg("-o")
        .arg(&out)
        .output_within(DEADLINE);
    let stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(!o.status.success(), "export {args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr}");
    for e in expect {
        assert!(stderr.contains(e), "`{e}` not in: {stderr}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "something was left in the output directory"
    );
    stderr
}

/// Writes the tiny fixture's tensors as safetensors after `edit`.
fn edited_safetensors(path: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(fixtures().join("tiny/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let dtype = if n.ends_with("num_batches_tracked") {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn missing_file() {
    export_fails(
        &["/nonexistent/model.pth"],
        &["/nonexistent/model.pth", "No such file"],
    );
}

#[test]
fn truncated_pth() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("truncated.pth");
    let bytes = std::fs::read(fixtures().join("tiny/mmcls.pth")).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    export_fails(&[p.to_str().unwrap()], &["truncated.pth"]);
}

#[test]
fn jpeg_renamed_pth() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("photo.pth");
    std::fs::copy(fixtures().join("images/chelsea.jpg"), &p).unwrap();
    export_fails(&[p.to_str().unwrap()], &["photo.pth", "JPEG"]);
}

#[test]
fn checkpoint_missing_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("missing.safetensors");
    edited_safetensors(&p, |t| {
        t.retain(|(n, _, _)| n != "layer2.1.bn2.running_var")
    });
    export_fails(
        &[p.to_str().unwrap()],
        &["missing.safetensors", "layer2.1.bn2.running_var"],
    );
}

#[test]
fn tensor_of_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shape.safetensors");
    edited_safetensors(&p, |t| {
        let e = t.iter_mut().find(|(n, _, _)| n == "fc.bias").unwrap();
        e.1 = vec![11];
        e.2.extend([0u8; 4]);
    });
    export_fails(
        &[p.to_str().unwrap()],
        &["shape.safetensors", "fc.bias", "[11]", "[10]"],
    );
}

#[test]
fn mismatched_arch() {
    let p = fixtures().join("tiny/torchvision.pth");
    export_fails(
        &[p.to_str().unwrap(), "--arch", "resnext50_32x4d"],
        &["torchvision.pth", "groups", "resnext50_32x4d"],
    );
}

#[test]
fn unwritable_output_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no-such-dir/model.onnx");
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .arg("export")
        .arg(fixtures().join("tiny/mmcls.pth"))
        .arg("-o")
        .arg(&out)
        .output_within(DEADLINE);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr.contains("no-such-dir/model.onnx") && stderr.contains("cannot write"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn output_that_is_a_directory_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"previous").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .arg("export")
        .arg(fixtures().join("tiny/mmcls.pth"))
        .arg("-o")
        .arg(dir.path())
        .output_within(DEADLINE);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a directory"));
    assert_eq!(
        std::fs::read(dir.path().join("keep.txt")).unwrap(),
        b"previous"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

//! Nothing lost when the disk fills: `export` and `quantize` write to a temporary file beside
//! the output and rename it only when every byte is on disk, so a write that fails part-way
//! leaves the previous model untouched and no temporary behind.
//!
//! The full disk is made with `RLIMIT_FSIZE` on the tool's process (writes past 16 KiB fail with
//! `EFBIG`, as they would with `ENOSPC` on a full file system; SIGXFSZ ignored so that the write
//! returns the error), and with `/dev/full` as the output itself.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::fixtures;
use std::path::Path;
use std::process::{Command, Output};

const PREVIOUS: &[u8] = b"the previous, good model";

/// Runs the tool with `args` and its file size limited to 16 KiB.
fn run_with_small_disk(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"));
    cmd.args(args);
    common::limit(&mut cmd, libc::RLIMIT_FSIZE, 16 << 10);
    cmd.output_within(DEADLINE)
}

fn micro_config(dir: &Path) -> String {
    let p = dir.join("micro.json");
    std::fs::write(
        &p,
        r#"{"layers": [1, 1, 1, 1], "groups": 2, "width_per_group": 2, "base_channels": 4, "stem_channels": 4, "num_classes": 3}"#,
    )
    .unwrap();
    p.display().to_string()
}

/// The failed write named the output, said why, kept the previous file and left nothing else.
fn assert_nothing_lost(o: &Output, dir: &Path, out: &Path, why: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot write", out.display())) && stderr.contains(why),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out).unwrap(), PREVIOUS);
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "micro.json")
        .collect();
    assert_eq!(left, ["model.onnx"], "a temporary file was left behind");
}

#[test]
fn export_to_a_full_disk_keeps_the_previous_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.onnx");
    std::fs::write(&out, PREVIOUS).unwrap();
    let ckpt = fixtures().join("tiny/torchvision.pth");
    let o = run_with_small_disk(&[
        "export",
        ckpt.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_nothing_lost(&o, dir.path(), &out, "File too large");
}

#[test]
fn quantize_to_a_full_disk_keeps_the_previous_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.onnx");
    std::fs::write(&out, PREVIOUS).unwrap();
    let config = micro_config(dir.path());
    let calib = fixtures().join("trained/calib");
    let o = run_with_small_disk(&[
        "quantize",
        "--random-weights",
        "1",
        "--config",
        &config,
        "--calib",
        calib.to_str().unwrap(),
        "--calib-count",
        "4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_nothing_lost(&o, dir.path(), &out, "File too large");
}

#[test]
fn export_to_dev_full_says_the_disk_is_full() {
    let o = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .args([
            "export",
            "--random-weights",
            "1",
            "--arch",
            "resnext50_32x4d",
        ])
        .args(["-o", "/dev/full"])
        .output_within(DEADLINE);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/full: cannot write") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata("/dev/full").unwrap();
    assert!(meta.file_type().is_char_device(), "/dev/full was replaced");
}

//! Hostile checkpoints (`tests/fixtures/hostile/`, made by `fuzz/make_checkpoints.py --hostile`):
//! each is refused quickly with one line naming the file and what is wrong, inside a 1 GiB
//! address-space limit (an attempt to allocate what the file claims would abort instead), and
//! nothing it asks for is executed.

mod common;

use common::deadline::{Deadline, DEADLINE};
use common::fixtures;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `export` on `name` under a 1 GiB address-space limit; returns its one error line.
fn refused(name: &str, expect: &str) {
    let path = fixtures().join("hostile").join(name);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"));
    cmd.arg("export")
        .arg(&path)
        .arg("-o")
        .arg(dir.path().join("out.onnx"));
    common::limit(&mut cmd, libc::RLIMIT_AS, 1 << 30);
    let start = Instant::now();
    let o = cmd.output_within(DEADLINE);
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(o.status.code(), Some(1), "{name}: {:?} {stderr}", o.status);
    assert_eq!(
        stderr.lines().count(),
        1,
        "{name}: more than one line: {stderr}"
    );
    assert!(stderr.contains(&format!("hostile/{name}")), "{stderr}");
    assert!(stderr.contains(expect), "`{expect}` not in: {stderr}");
    assert!(took < Duration::from_secs(10), "{name} took {took:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_pickle_calling_os_system_is_refused_by_name_in_a_zip() {
    refused(
        "os_system_zip.pth",
        "references `posix.system`, which is not among the functions and classes torch checkpoints use",
    );
}

#[test]
fn a_pickle_calling_os_system_is_refused_by_name_in_a_legacy_file() {
    refused("os_system_legacy.pth", "references `posix.system`");
}

#[test]
fn a_tensor_claiming_a_terabyte_is_refused_before_allocation() {
    refused("huge_shape_zip.pth", "[1048576, 1048576]");
    refused("huge_shape_legacy.pth", "[1048576, 1048576]");
    refused(
        "huge_shape.safetensors",
        "invalid shape, data type, or offset",
    );
}

#[test]
fn a_zip_entry_claiming_4_gb_is_refused_before_inflating() {
    refused(
        "zip_bomb.pth",
        "zip entry `archive/data/0` claims 4026531840 bytes from 1033 compressed",
    );
}

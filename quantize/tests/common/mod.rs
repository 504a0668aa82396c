//! Shared by the integration tests: where the fixtures are, the peer runtime (onnxruntime in a
//! Python venv), and the export of fixture checkpoints.
#![allow(dead_code)]

#[path = "../../../tests/common/deadline.rs"]
pub mod deadline;

use deadline::{Deadline, DEADLINE};
use resnext_edge::preprocess::{decode_file, Preprocessor};
use resnext_quantize::export::{self, ArchRequest, WeightSource};
use resnext_quantize::npy;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// Creating the venv installs onnxruntime and numpy from the package index.
const VENV_DEADLINE: Duration = Duration::from_secs(1800);

/// Sets a resource limit (`RLIMIT_AS`, `RLIMIT_FSIZE`) of `bytes` on the child `cmd` starts;
/// SIGXFSZ is ignored there, so that a write past the file size limit fails with EFBIG.
pub fn limit(cmd: &mut Command, resource: libc::__rlimit_resource_t, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal and setrlimit are async-signal-safe and change only the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(resource, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixtures() -> PathBuf {
    workspace().join("tests/fixtures")
}

/// Exports a checkpoint to a float ONNX model in `dir`.
pub fn export_float(checkpoint: &Path, dir: &Path) -> PathBuf {
    let source = export::load_source(
        &WeightSource::Checkpoint(checkpoint.to_path_buf()),
        &ArchRequest::default(),
    )
    .unwrap();
    let meta = export::metadata_for(&source, None).unwrap();
    let out = dir.join("model.onnx");
    export::export_float(&source, &meta, &out).unwrap();
    out
}

/// The Python interpreter with onnxruntime: `RESNEXT_EDGE_PYTHON`, or the workspace's `.venv`,
/// created by scripts/python-venv.sh when missing.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("RESNEXT_EDGE_PYTHON") {
            return PathBuf::from(p);
        }
        let out = Command::new("bash")
            .arg(workspace().join("scripts/python-venv.sh"))
            .output_within(VENV_DEADLINE);
        assert!(
            out.status.success(),
            "scripts/python-venv.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// Logits of `model` on `inputs` (.npy) from onnxruntime.
pub fn ort_logits(model: &Path, inputs: &Path, dir: &Path) -> resnext_quantize::npy::Array {
    let out = dir.join("ort_logits.npy");
    let st = Command::new(python())
        .arg(workspace().join("scripts/ort_logits.py"))
        .args([model, inputs, &out])
        .status_within(DEADLINE);
    assert!(st.success(), "ort_logits.py failed on {}", model.display());
    resnext_quantize::npy::read(&out).unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(v: &[f32]) -> usize {
    resnext_edge::topk::top_indices(v, 1)[0]
}

/// `resnext-quantize quantize` on the trained fixture model and its calibration images.
pub fn quantize_cmd(out: &Path, extra: &[&str]) -> Output {
    let t = fixtures().join("trained");
    Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .arg("quantize")
        .arg(t.join("mmcls.pth"))
        .arg("--calib")
        .arg(t.join("calib"))
        .arg("-o")
        .arg(out)
        .arg("--quiet")
        .args(extra)
        .output_within(DEADLINE)
}

/// Quantizes the trained fixture model into `dir/name`; panics with the tool's error if it fails.
pub fn quantize_trained(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = quantize_cmd(&out, extra);
    assert!(
        o.status.success(),
        "quantize {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Preprocesses `files` into `npy_path` (N x 3 x 224 x 224); returns the inputs.
pub fn images_npy(files: &[PathBuf], npy_path: &Path) -> Vec<Vec<f32>> {
    let mut pre = Preprocessor::new(Default::default());
    let inputs: Vec<Vec<f32>> = files
        .iter()
        .map(|f| pre.preprocess(&decode_file(f).unwrap()))
        .collect();
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    std::fs::write(npy_path, npy::encode(&[inputs.len(), 3, 224, 224], &flat)).unwrap();
    inputs
}

/// The trained model's 200 eval images, preprocessed, in `eval.txt` order, also as `dir/eval.npy`.
pub fn eval_inputs(dir: &Path) -> (PathBuf, Vec<Vec<f32>>) {
    let t = fixtures().join("trained");
    let files: Vec<PathBuf> = std::fs::read_to_string(t.join("eval.txt"))
        .unwrap()
        .lines()
        .map(|f| t.join(f))
        .collect();
    let path = dir.join("eval.npy");
    let inputs = images_npy(&files, &path);
    (path, inputs)
}

/// onnxruntime's `quantize_static` (scripts/ort_quantize.py) on the trained model's float export,
/// calibrated on its calibration images: one model per `(format, activations)`, in `dir`.
pub fn ort_quantized(dir: &Path, layouts: &[(&str, &str)]) -> Vec<PathBuf> {
    let t = fixtures().join("trained");
    let float = export_float(&t.join("mmcls.pth"), dir);
    let mut calib: Vec<PathBuf> = std::fs::read_dir(t.join("calib"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    calib.sort();
    let calib_npy = dir.join("calib.npy");
    images_npy(&calib, &calib_npy);
    layouts
        .iter()
        .map(|(format, act)| {
            let model = dir.join(format!("ort_{format}_{act}.onnx"));
            let o = Command::new(python())
                .arg(workspace().join("scripts/ort_quantize.py"))
                .arg(&float)
                .arg("--inputs")
                .arg(&calib_npy)
                .args(["--format", format, "--activation", act, "-o"])
                .arg(&model)
                .output_within(DEADLINE);
            assert!(
                o.status.success(),
                "ort_quantize.py {format} {act}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            model
        })
        .collect()
}

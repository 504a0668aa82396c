//! The `export` job: a checkpoint (or random weights) in, a float ONNX model out, with the
//! architecture inferred, checked against what the user asked for, and recorded in the model's
//! metadata together with the labels and the checkpoint's digest.

use crate::atomic::write_atomic;
use crate::checkpoint::{self, Checkpoint};
use crate::float_net::FloatNet;
use crate::infer;
use crate::onnx_builder::encode;
use crate::random_weights::random_checkpoint;
use anyhow::{bail, Context, Result};
use resnext_edge::metadata::{ModelMetadata, Preprocessing};
use resnext_edge::resnext::{self, ResNeXtConfig};
use std::path::{Path, PathBuf};

/// What the user said about the architecture.
#[derive(Clone, Debug, Default)]
pub struct ArchRequest {
    /// A preset name (`resnext50_32x4d`, ...).
    pub preset: Option<String>,
    /// A JSON config file (`{"layers": [3, 4, 6, 3], "groups": 32, ...}`).
    pub config_file: Option<PathBuf>,
}

impl ArchRequest {
    /// The requested config and how to name it in messages, if any was requested.
    pub fn resolve(&self) -> Result<Option<(ResNeXtConfig, String)>> {
        match (&self.preset, &self.config_file) {
            (Some(_), Some(_)) => bail!("give either --arch or --config, not both"),
            (Some(name), None) => {
                let p = resnext::preset(name).with_context(|| {
                    let names: Vec<_> = resnext::presets().iter().map(|p| p.name).collect();
                    format!("unknown --arch `{name}` (known: {})", names.join(", "))
                })?;
                Ok(Some((p.config, format!("--arch {}", p.name))))
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                let c: ResNeXtConfig = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a ResNeXt config", path.display()))?;
                let c = c
                    .validated()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(Some((c, format!("--config {}", path.display()))))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Where the weights come from.
#[derive(Clone, Debug)]
pub enum WeightSource {
    Checkpoint(PathBuf),
    Random(u64),
}

/// A checkpoint with its verified architecture.
pub struct Source {
    pub checkpoint: Checkpoint,
    pub config: ResNeXtConfig,
}

/// Loads the weights and settles the architecture: inferred from the tensors and checked
/// against the request, or (for random weights) taken from the request.
pub fn load_source(weights: &WeightSource, request: &ArchRequest) -> Result<Source> {
    let wanted = request.resolve()?;
    match weights {
        WeightSource::Random(seed) => {
            let Some((config, _)) = wanted else {
                bail!("--random-weights needs --arch or --config")
            };
            Ok(Source {
                checkpoint: random_checkpoint(&config, *seed),
                config,
            })
        }
        WeightSource::Checkpoint(path) => {
            let ck = checkpoint::load(path)?;
            let config = infer::infer_config(&ck)?;
            if let Some((w, name)) = &wanted {
                infer::check_matches(&ck, &config, w, name)?;
            }
            infer::check_tensors(&ck, &config)?;
            Ok(Source {
                checkpoint: ck,
                config,
            })
        }
    }
}

/// Reads a label file: one class name per line.
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read labels", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The metadata of a model made from `source`; `labels` override the checkpoint's own.
pub fn metadata_for(source: &Source, labels: Option<Vec<String>>) -> Result<ModelMetadata> {
    let n = source.config.num_classes;
    let labels = match labels.or_else(|| source.checkpoint.labels.clone()) {
        Some(l) if l.len() == n => Some(l),
        Some(l) => bail!("{} labels given for a model of {n} classes", l.len()),
        None => None,
    };
    let ck = &source.checkpoint;
    Ok(ModelMetadata {
        labels,
        preprocessing: Preprocessing::default(),
        arch: Some(source.config.clone()),
        source_sha256: (!ck.sha256.is_empty()).then(|| ck.sha256.clone()),
        source: ck
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        extra: Vec::new(),
    })
}

/// Writes the float model of `source` to `out`, atomically; returns the bytes written.
pub fn export_float(source: &Source, metadata: &ModelMetadata, out: &Path) -> Result<usize> {
    let net = FloatNet::from_checkpoint(&source.checkpoint, &source.config);
    let bytes = encode(&net.to_onnx(metadata));
    write_atomic(out, &bytes)?;
    Ok(bytes.len())
}

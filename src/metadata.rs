//! What a resnext-edge ONNX model says about itself in `metadata_props`, so that the runtime needs
//! nothing but the model file: class names, the preprocessing it was trained with, the
//! architecture and where the weights came from.
//!
//! The quantizer writes these keys, the runtime reads them; models from elsewhere have none of
//! them, and then the mmcls ImageNet defaults apply.

use crate::resnext::ResNeXtConfig;
use serde::{Deserialize, Serialize};

/// Prefix of every key this project writes.
pub const PREFIX: &str = "resnext_edge.";

/// The largest `resize` (and so `crop`) a model may ask for: it sizes the input tensor, which is
/// allocated before anything else is checked.
pub const MAX_RESIZE: usize = 4096;

/// mmcls' ImageNet normalization (RGB order).
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Preprocessing of the mmcls test pipeline: resize the shorter side, center crop, normalize.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub resize: usize,
    pub crop: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Preprocessing {
    fn default() -> Self {
        Preprocessing {
            resize: 256,
            crop: 224,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// Everything a model file carries for the runtime. Every field is optional in a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMetadata {
    pub labels: Option<Vec<String>>,
    pub preprocessing: Preprocessing,
    pub arch: Option<ResNeXtConfig>,
    /// SHA-256 (hex) of the checkpoint the weights came from.
    pub source_sha256: Option<String>,
    /// File name of that checkpoint.
    pub source: Option<String>,
    /// Every other `resnext_edge.*` entry, e.g. quantization settings, kept as written.
    pub extra: Vec<(String, String)>,
}

/// A metadata entry that is present but unreadable.
#[derive(Debug, thiserror::Error)]
#[error("model metadata `{key}` is invalid: {reason}")]
pub struct MetadataError {
    pub key: String,
    pub reason: String,
}

impl ModelMetadata {
    /// The `(key, value)` pairs to store in `metadata_props`.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut put = |k: &str, v: String| out.push((format!("{PREFIX}{k}"), v));
        if let Some(l) = &self.labels {
            put("labels", json(l));
        }
        let p = &self.preprocessing;
        put("resize", p.resize.to_string());
        put("crop", p.crop.to_string());
        put("mean", json(&p.mean));
        put("std", json(&p.std));
        if let Some(a) = &self.arch {
            put("arch", json(a));
        }
        if let Some(s) = &self.source_sha256 {
            put("source_sha256", s.clone());
        }
        if let Some(s) = &self.source {
            put("source", s.clone());
        }
        for (k, v) in &self.extra {
            put(k, v.clone());
        }
        out
    }

    /// Reads the entries this project knows; others are ignored, keys under our prefix that this
    /// version does not know are kept in `extra`.
    pub fn from_props<'a>(
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MetadataError> {
        let mut m = ModelMetadata::default();
        for (key, value) in props {
            let Some(k) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let bad = |e: &dyn std::fmt::Display| MetadataError {
                key: key.to_string(),
                reason: e.to_string(),
            };
            match k {
                "labels" => m.labels = Some(serde_json::from_str(value).map_err(|e| bad(&e))?),
                "resize" => m.preprocessing.resize = value.parse().map_err(|e| bad(&e))?,
                "crop" => m.preprocessing.crop = value.parse().map_err(|e| bad(&e))?,
                "mean" => {
                    m.preprocessing.mean = serde_json::from_str(value).map_err(|e| bad(&e))?
                }
                "std" => m.preprocessing.std = serde_json::from_str(value).map_err(|e| bad(&e))?,
                "arch" => m.arch = Some(serde_json::from_str(value).map_err(|e| bad(&e))?),
                "source_sha256" => m.source_sha256 = Some(value.to_string()),
                "source" => m.source = Some(value.to_string()),
                other => m.extra.push((other.to_string(), value.to_string())),
            }
        }
        let p = &m.preprocessing;
        if p.resize > MAX_RESIZE {
            return Err(MetadataError {
                key: format!("{PREFIX}resize"),
                reason: format!("resize {} is above the supported {MAX_RESIZE}", p.resize),
            });
        }
        if p.crop == 0 || p.resize < p.crop {
            return Err(MetadataError {
                key: format!("{PREFIX}resize"),
                reason: format!(
                    "resize {} and crop {} do not make a center crop",
                    p.resize, p.crop
                ),
            });
        }
        if p.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || p.mean.iter().any(|s| !s.is_finite())
        {
            return Err(MetadataError {
                key: format!("{PREFIX}std"),
                reason: "mean and std must be finite, std non-zero".into(),
            });
        }
        Ok(m)
    }

    /// Looks up an `extra` entry.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Serializes one of the metadata's plain values; these cannot fail to serialize.
fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_props() {
        let m = ModelMetadata {
            labels: Some(vec!["cat".into(), "a \"quoted\" dog".into()]),
            preprocessing: Preprocessing {
                resize: 288,
                crop: 256,
                ..Default::default()
            },
            arch: Some(crate::resnext::preset("resnext50_32x4d").unwrap().config),
            source_sha256: Some("ab".repeat(32)),
            source: Some("x.pth".into()),
            extra: vec![("quant.method".into(), "entropy".into())],
        };
        let props = m.to_props();
        let back =
            ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.extra("quant.method"), Some("entropy"));
    }

    #[test]
    fn bad_entries_name_their_key() {
        let e = ModelMetadata::from_props([("resnext_edge.labels", "[1, 2")]).unwrap_err();
        assert!(e.to_string().contains("resnext_edge.labels"), "{e}");
        let e = ModelMetadata::from_props([("resnext_edge.crop", "300")]).unwrap_err();
        assert!(e.to_string().contains("crop 300"), "{e}");
        let e = ModelMetadata::from_props([
            ("resnext_edge.resize", "100000"),
            ("resnext_edge.crop", "100000"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("above the supported 4096"), "{e}");
        let none = ModelMetadata::from_props([("producer", "x")]).unwrap();
        assert_eq!(none, ModelMetadata::default());
    }
}

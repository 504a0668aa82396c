//! The architecture of a checkpoint, read off its tensors: stage depths from the block indices,
//! groups from the grouped 3x3 weight, widths from the channel counts, classes from the head.
//! Then every tensor the architecture needs is checked for presence and shape, so that a bad
//! file fails here with the key's name rather than deep inside graph building.

use crate::checkpoint::{Checkpoint, Tensor};
use resnext_edge::resnext::ResNeXtConfig;
use std::collections::BTreeMap;

/// A checkpoint that does not hold a ResNeXt, or not the one asked for. Messages name the file
/// and the key or field.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("{path}: missing tensor `{key}`")]
    Missing { path: String, key: String },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: String,
        key: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: does not match {wanted}: {field} is {found} in the checkpoint, {expected} in {wanted}")]
    Mismatch {
        path: String,
        wanted: String,
        field: &'static str,
        found: String,
        expected: String,
    },
}

fn get<'a>(ck: &'a Checkpoint, key: &str) -> Result<&'a Tensor, ArchError> {
    ck.tensors.get(key).ok_or_else(|| ArchError::Missing {
        path: ck.path.display().to_string(),
        key: key.to_string(),
    })
}

fn dims<const N: usize>(ck: &Checkpoint, key: &str) -> Result<[usize; N], ArchError> {
    let t = get(ck, key)?;
    t.shape
        .as_slice()
        .try_into()
        .map_err(|_| ArchError::Invalid {
            path: ck.path.display().to_string(),
            message: format!(
                "tensor `{key}` has {} dimensions, expected {N}",
                t.shape.len()
            ),
        })
}

/// Reads the architecture off the tensors (without checking every tensor: see [`check_tensors`]).
pub fn infer_config(ck: &Checkpoint) -> Result<ResNeXtConfig, ArchError> {
    let path = ck.path.display().to_string();
    let invalid = |message: String| ArchError::Invalid {
        path: path.clone(),
        message,
    };
    let [stem_channels, ..] = dims::<4>(ck, "conv1.weight")?;
    let mut layers = [0usize; 4];
    for (s, n) in layers.iter_mut().enumerate() {
        while ck
            .tensors
            .contains_key(&format!("layer{}.{}.conv1.weight", s + 1, *n))
        {
            *n += 1;
        }
        if *n == 0 {
            return Err(ArchError::Missing {
                path: path.clone(),
                key: format!("layer{}.0.conv1.weight", s + 1),
            });
        }
    }
    let [mid, mid_per_group, ..] = dims::<4>(ck, "layer1.0.conv2.weight")?;
    if mid_per_group == 0 || mid % mid_per_group != 0 {
        return Err(invalid(format!(
            "`layer1.0.conv2.weight` has {mid} outputs and {mid_per_group} inputs per group"
        )));
    }
    let groups = mid / mid_per_group;
    let [out1, ..] = dims::<4>(ck, "layer1.0.conv3.weight")?;
    if out1 % 4 != 0 {
        return Err(invalid(format!(
            "`layer1.0.conv3.weight` has {out1} outputs, not a multiple of 4"
        )));
    }
    let base_channels = out1 / 4;
    let width_per_group = if groups == 1 {
        base_channels
    } else {
        mid / groups
    };
    let [num_classes, _] = dims::<2>(ck, "fc.weight")?;
    ResNeXtConfig::new(
        layers,
        groups,
        width_per_group,
        base_channels,
        stem_channels,
        num_classes,
    )
    .validated()
    .map_err(invalid)
}

/// Every tensor `config` needs, with its shape, in a stable order.
pub fn expected_tensors(config: &ResNeXtConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for c in config.convs(224) {
        out.push((format!("{}.weight", c.name), c.weight_shape().to_vec()));
        for p in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{}.{p}", c.bn), vec![c.out_channels]));
        }
    }
    out.push((
        "fc.weight".into(),
        vec![config.num_classes, config.feature_channels()],
    ));
    out.push(("fc.bias".into(), vec![config.num_classes]));
    out
}

/// Checks that every tensor of `config` is present with its shape; warns about extra tensors.
pub fn check_tensors(ck: &Checkpoint, config: &ResNeXtConfig) -> Result<(), ArchError> {
    let path = ck.path.display().to_string();
    let expected = expected_tensors(config);
    for (key, shape) in &expected {
        let t = get(ck, key)?;
        if &t.shape != shape {
            return Err(ArchError::Shape {
                path,
                key: key.clone(),
                found: t.shape.clone(),
                expected: shape.clone(),
            });
        }
    }
    let known: BTreeMap<&str, ()> = expected.iter().map(|(k, _)| (k.as_str(), ())).collect();
    let extra: Vec<&String> = ck
        .tensors
        .keys()
        .filter(|k| !known.contains_key(k.as_str()))
        .collect();
    if !extra.is_empty() {
        log::warn!(
            "{path}: {} tensors not used by the architecture, ignored (first: `{}`)",
            extra.len(),
            extra[0]
        );
    }
    Ok(())
}

/// Compares the inferred config with the one the user asked for; the error names the first
/// field that differs.
pub fn check_matches(
    ck: &Checkpoint,
    found: &ResNeXtConfig,
    wanted: &ResNeXtConfig,
    wanted_name: &str,
) -> Result<(), ArchError> {
    let fields: [(&'static str, String, String); 6] = [
        (
            "layers",
            format!("{:?}", found.layers),
            format!("{:?}", wanted.layers),
        ),
        (
            "groups",
            found.groups.to_string(),
            wanted.groups.to_string(),
        ),
        (
            "width_per_group",
            found.width_per_group.to_string(),
            wanted.width_per_group.to_string(),
        ),
        (
            "base_channels",
            found.base_channels.to_string(),
            wanted.base_channels.to_string(),
        ),
        (
            "stem_channels",
            found.stem_channels.to_string(),
            wanted.stem_channels.to_string(),
        ),
        (
            "num_classes",
            found.num_classes.to_string(),
            wanted.num_classes.to_string(),
        ),
    ];
    for (field, f, w) in fields {
        if f != w {
            return Err(ArchError::Mismatch {
                path: ck.path.display().to_string(),
                wanted: wanted_name.to_string(),
                field,
                found: f,
                expected: w,
            });
        }
    }
    Ok(())
}

//! Reading ResNeXt checkpoints as they are found in the wild: torch zip files (torch >= 1.6),
//! torch legacy files, and safetensors; mmclassification's `{'meta', 'state_dict'}` layout with
//! `backbone.` / `head.fc.` keys, or a bare torchvision / timm state dict.
//!
//! Everything is brought to one form: float32 tensors under torchvision names (`conv1.weight`,
//! `layer1.0.conv2.weight`, `fc.bias`). Pickle is read by `pytorch-reader`, which interprets the
//! opcodes without executing anything (a pickle that calls a function it does not know is
//! refused). `num_batches_tracked` is dropped.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A dense float32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data does not fill its shape"
        );
        Tensor { shape, data }
    }
}

/// The file container a checkpoint came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    TorchZip,
    TorchLegacy,
    Safetensors,
}

/// How the checkpoint named its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLayout {
    /// mmclassification: `backbone.*`, `head.fc.*`, under `state_dict`.
    MmCls,
    /// torchvision / timm: `conv1.*`, `layer1.*`, `fc.*`.
    TorchVision,
}

/// A checkpoint brought to torchvision names and float32.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub container: Container,
    pub layout: KeyLayout,
    pub tensors: BTreeMap<String, Tensor>,
    /// Class names from mmcls' `meta['CLASSES']`, when present.
    pub labels: Option<Vec<String>>,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Why a checkpoint could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a PyTorch (.pth zip or legacy) or safetensors checkpoint ({detail})")]
    UnknownFormat { path: String, detail: String },
    #[error("{path}: corrupt or truncated {container:?} checkpoint: {detail}")]
    Corrupt {
        path: String,
        container: Container,
        detail: String,
    },
    #[error("{path}: tensor `{key}` has element type {dtype}, which is not a floating-point type")]
    DType {
        path: String,
        key: String,
        dtype: String,
    },
    #[error("{path}: no tensors found")]
    Empty { path: String },
    #[error("{path}: {detail}")]
    Forbidden { path: String, detail: String },
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Reads the container type off the first bytes of the file.
fn sniff(path: &Path, head: &[u8], len: u64) -> Result<Container, CheckpointError> {
    let shown = path.display().to_string();
    if head.starts_with(ZIP_MAGIC) {
        return Ok(Container::TorchZip);
    }
    // Pickle protocol 2+ opens with PROTO (0x80) and the version; legacy torch files are a
    // sequence of pickles starting with the magic number.
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Ok(Container::TorchLegacy);
    }
    if head.len() >= 9 {
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if head[8] == b'{' && n > 0 && n.saturating_add(8) <= len {
            return Ok(Container::Safetensors);
        }
    }
    let detail = match head {
        [0xff, 0xd8, 0xff, ..] => "it is a JPEG image".to_string(),
        [0x89, b'P', b'N', b'G', ..] => "it is a PNG image".to_string(),
        [] => "the file is empty".to_string(),
        _ => format!(
            "unrecognized first bytes {:02x?}",
            &head[..head.len().min(8)]
        ),
    };
    Err(CheckpointError::UnknownFormat {
        path: shown,
        detail,
    })
}

/// Reads a checkpoint of any supported container and layout.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let shown = path.display().to_string();
    let io = |source| CheckpointError::Io {
        path: shown.clone(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(16);
    file.by_ref().take(16).read_to_end(&mut head).map_err(io)?;
    let container = sniff(path, &head, len)?;
    guard(path, container, &mut file)?;
    let sha256 = sha256_file(path).map_err(io)?;
    let raw = match container {
        Container::Safetensors => read_safetensors(path)?,
        Container::TorchZip | Container::TorchLegacy => read_torch(path, container)?,
    };
    if raw.is_empty() {
        return Err(CheckpointError::Empty { path: shown });
    }
    let layout = if raw.keys().any(|k| k.contains("backbone.")) {
        KeyLayout::MmCls
    } else {
        KeyLayout::TorchVision
    };
    let mut tensors = BTreeMap::new();
    for (key, t) in raw {
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        tensors.insert(normalize_key(&key), t);
    }
    let labels = match (container, layout) {
        (Container::TorchZip | Container::TorchLegacy, KeyLayout::MmCls) => {
            read_mmcls_classes(path)
        }
        _ => None,
    };
    log::info!(
        "{shown}: {container:?}, {layout:?} keys, {} tensors",
        tensors.len()
    );
    Ok(Checkpoint {
        path: path.to_path_buf(),
        container,
        layout,
        tensors,
        labels,
        sha256,
    })
}

/// Checks what a torch file's pickles may call and what its zip entries claim, before the
/// reader sees the file (see [`crate::pickle_guard`]).
fn guard(
    path: &Path,
    container: Container,
    file: &mut std::fs::File,
) -> Result<(), CheckpointError> {
    use crate::pickle_guard::{self, Refusal};
    use std::io::{Seek, SeekFrom};
    let shown = path.display().to_string();
    let refusal = |r: Refusal| match r {
        Refusal::Global(_) => CheckpointError::Forbidden {
            path: shown.clone(),
            detail: r.to_string(),
        },
        Refusal::Malformed(_) | Refusal::Zip(_) => CheckpointError::Corrupt {
            path: shown.clone(),
            container,
            detail: r.to_string(),
        },
    };
    match container {
        Container::TorchZip => pickle_guard::check_zip(path).map_err(refusal),
        Container::TorchLegacy => {
            let mut head = Vec::new();
            file.seek(SeekFrom::Start(0))
                .and_then(|_| {
                    file.by_ref()
                        .take(pickle_guard::MAX_PICKLE_BYTES)
                        .read_to_end(&mut head)
                })
                .map_err(|source| CheckpointError::Io {
                    path: shown.clone(),
                    source,
                })?;
            pickle_guard::check_legacy(&head).map_err(refusal)
        }
        Container::Safetensors => Ok(()),
    }
}

/// torchvision name of a key from any known layout: the `state_dict.` nesting, DataParallel's
/// `module.`, mmcls' `backbone.` and `head.`.
pub fn normalize_key(key: &str) -> String {
    let mut k = key;
    for prefix in ["state_dict.", "model.", "module."] {
        k = k.strip_prefix(prefix).unwrap_or(k);
    }
    if let Some(rest) = k.strip_prefix("backbone.") {
        return rest.to_string();
    }
    if let Some(rest) = k.strip_prefix("head.") {
        return rest.to_string();
    }
    k.to_string()
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn read_torch(
    path: &Path,
    container: Container,
) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let shown = path.display().to_string();
    let corrupt = |detail: String| CheckpointError::Corrupt {
        path: shown.clone(),
        container,
        detail,
    };
    let file_len = std::fs::metadata(path)
        .map_err(|source| CheckpointError::Io {
            path: shown.clone(),
            source,
        })?
        .len();
    // Stored (uncompressed) entries are what torch writes; a compressed one may hold more than
    // the file, within the zip check's ratio.
    let max_bytes = match container {
        Container::TorchZip => file_len.saturating_mul(1000),
        _ => file_len,
    };
    let reader = pytorch_reader::PytorchReader::new(path).map_err(|e| corrupt(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let dtype = t.dtype();
        let shape = t.shape().to_vec();
        let bytes = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if bytes.is_none_or(|b| b > max_bytes) {
            return Err(corrupt(format!(
                "tensor `{name}` of shape {shape:?} needs more bytes than the file holds ({file_len})"
            )));
        }
        let bytes = t.read().map_err(|e| corrupt(e.to_string()))?;
        let data = to_f32(&bytes, dtype).ok_or_else(|| CheckpointError::DType {
            path: shown.clone(),
            key: name.clone(),
            dtype: format!("{dtype:?}"),
        });
        match data {
            Ok(data) => {
                out.insert(name, Tensor::new(shape, data));
            }
            // Integer buffers other than num_batches_tracked do not belong in a ResNeXt; leave
            // them out here and let the architecture check name what is missing.
            Err(e) if name.ends_with("num_batches_tracked") => drop(e),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Bytes of a native-endian (little-endian on every supported target) tensor to f32.
fn to_f32(bytes: &[u8], dtype: pytorch_reader::DType) -> Option<Vec<f32>> {
    use pytorch_reader::DType as D;
    Some(match dtype {
        D::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        D::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        D::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        D::BF16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        _ => return None,
    })
}

/// IEEE half to single precision, subnormals included.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: shown.clone(),
        source,
    })?;
    let corrupt = |detail: String| CheckpointError::Corrupt {
        path: shown.clone(),
        container: Container::Safetensors,
        detail,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        use safetensors::Dtype as S;
        let dtype = match view.dtype() {
            S::F32 => pytorch_reader::DType::F32,
            S::F64 => pytorch_reader::DType::F64,
            S::F16 => pytorch_reader::DType::F16,
            S::BF16 => pytorch_reader::DType::BF16,
            _ if name.ends_with("num_batches_tracked") => continue,
            other => {
                return Err(CheckpointError::DType {
                    path: shown.clone(),
                    key: name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let data = to_f32(view.data(), dtype).expect("float dtype");
        out.insert(name, Tensor::new(view.shape().to_vec(), data));
    }
    Ok(out)
}

/// `meta['CLASSES']` of an mmcls checkpoint. Anything unexpected in `meta` is ignored: the
/// labels are a nicety, never a reason to refuse the weights.
fn read_mmcls_classes(path: &Path) -> Option<Vec<String>> {
    use pytorch_reader::PickleValue as V;
    let meta = match pytorch_reader::PytorchReader::read_pickle_data(path, Some("meta")) {
        Ok(m) => m,
        Err(e) => {
            log::debug!("{}: no readable meta: {e}", path.display());
            return None;
        }
    };
    let V::Dict(d) = meta else { return None };
    let classes = match d.get("CLASSES")? {
        V::List(l) => l,
        _ => return None,
    };
    classes
        .iter()
        .map(|c| match c {
            V::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_layout_normalize_to_torchvision() {
        assert_eq!(
            normalize_key("state_dict.backbone.layer1.0.conv2.weight"),
            "layer1.0.conv2.weight"
        );
        assert_eq!(normalize_key("backbone.conv1.weight"), "conv1.weight");
        assert_eq!(normalize_key("state_dict.head.fc.bias"), "fc.bias");
        assert_eq!(normalize_key("module.fc.weight"), "fc.weight");
        assert_eq!(
            normalize_key("layer4.2.bn3.running_var"),
            "layer4.2.bn3.running_var"
        );
    }

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn sniffing_names_what_the_file_is() {
        let p = Path::new("x.pth");
        let e = sniff(p, b"\xff\xd8\xff\xe0\x00\x10JFIF", 100).unwrap_err();
        assert!(e.to_string().contains("JPEG"), "{e}");
        assert_eq!(
            sniff(p, b"PK\x03\x04rest", 100).unwrap(),
            Container::TorchZip
        );
        assert_eq!(
            sniff(p, b"\x80\x02\x8a\x0alfc", 100).unwrap(),
            Container::TorchLegacy
        );
        let mut st = 10u64.to_le_bytes().to_vec();
        st.extend(b"{\"a\":1}   ");
        assert_eq!(sniff(p, &st, 18).unwrap(), Container::Safetensors);
    }
}

//! Reading and writing float32 `.npy` arrays (NumPy's format, version 1 and 2 headers,
//! little-endian, C order): the exchange format with PyTorch and onnxruntime for reference
//! inputs and logits.

use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

/// A float32 array with its shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    /// Row `i` of the first axis.
    pub fn row(&self, i: usize) -> &[f32] {
        let n: usize = self.shape[1..].iter().product();
        &self.data[i * n..(i + 1) * n]
    }
}

/// Reads a `<f4` C-order array.
pub fn read(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse(&bytes).with_context(|| format!("{}: not a float32 .npy array", path.display()))
}

fn parse(bytes: &[u8]) -> Result<Array> {
    ensure!(
        bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY",
        "no .npy magic"
    );
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated header");
            (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    ensure!(bytes.len() >= start + hlen, "truncated header");
    let header = std::str::from_utf8(&bytes[start..start + hlen])?;
    ensure!(
        header.contains("'descr': '<f4'"),
        "dtype is not little-endian float32: {header}"
    );
    ensure!(
        header.contains("'fortran_order': False"),
        "Fortran order is not supported"
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("no shape in header")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    ensure!(
        body.len() == n * 4,
        "{} bytes of data for shape {shape:?}",
        body.len()
    );
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(Array { shape, data })
}

/// Encodes a `<f4` C-order array (version 1 header, padded to 64 bytes).
pub fn encode(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape_text}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_parse_round_trip() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = encode(&[2, 3, 4], &data);
        assert_eq!(bytes.len() % 64, 24 * 4 % 64);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        assert_eq!(a.row(1)[0], 3.0);
        assert_eq!(
            parse(&encode(&[3], &[1.0, 2.0, 3.0])).unwrap().shape,
            vec![3]
        );
        assert!(parse(b"\x93NUMPY\x01\x00\x05\x00{'de").is_err());
    }
}

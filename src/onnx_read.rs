//! An ONNX file decoded as it is read, 64 KiB at a time: the file's bytes are never in memory
//! beside the decoded model (reading the file whole, or mapping it, holds both at once: twice
//! the weights for a moment, 51 MB for resnext50_32x4d int8).

use prost::bytes::Buf;
use prost::Message;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use tract_onnx::pb;

/// Bytes read per refill.
const CHUNK: usize = 64 * 1024;

/// The model in `path`, or a message saying why not (unreadable, not an ONNX protobuf).
pub fn read_model(path: &Path) -> Result<pb::ModelProto, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    let len = usize::try_from(len).map_err(|_| format!("{len} bytes is too large"))?;
    let mut buf = ReadBuf::new(file, len);
    let decoded = pb::ModelProto::decode(&mut buf);
    if let Some(e) = buf.error.take() {
        return Err(format!("cannot read: {e}"));
    }
    decoded.map_err(|e| format!("not a readable ONNX model: {e}"))
}

/// A [`Buf`] over a reader of `remaining` bytes, refilled as it is consumed. A read error (or an
/// early end) ends it: it then reports no bytes left, which fails the decoding, and keeps the
/// error for the caller.
struct ReadBuf<R> {
    reader: R,
    chunk: Vec<u8>,
    start: usize,
    end: usize,
    remaining: usize,
    error: Option<std::io::Error>,
}

impl<R: Read> ReadBuf<R> {
    fn new(reader: R, len: usize) -> Self {
        let mut b = ReadBuf {
            reader,
            chunk: vec![0; CHUNK.min(len.max(1))],
            start: 0,
            end: 0,
            remaining: len,
            error: None,
        };
        b.fill();
        b
    }

    /// Reads the next chunk (at most `remaining` bytes) once the current one is consumed.
    fn fill(&mut self) {
        let want = self.chunk.len().min(self.remaining);
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut self.chunk[got..want]) {
                Ok(0) => {
                    self.fail(std::io::ErrorKind::UnexpectedEof.into());
                    return;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
        (self.start, self.end) = (0, got);
    }

    fn fail(&mut self, e: std::io::Error) {
        self.error = Some(e);
        (self.start, self.end, self.remaining) = (0, 0, 0);
    }
}

impl<R: Read> Buf for ReadBuf<R> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        &self.chunk[self.start..self.end]
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end");
        while cnt > 0 && self.remaining > 0 {
            let step = cnt.min(self.end - self.start);
            (self.start, self.remaining, cnt) =
                (self.start + step, self.remaining - step, cnt - step);
            if self.start == self.end && self.remaining > 0 {
                self.fill();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `step` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn model_bytes() -> Vec<u8> {
        let big: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i * 7) as u8).collect();
        let graph = pb::GraphProto {
            name: "g".into(),
            initializer: vec![
                crate::onnx_build::raw_tensor(
                    "a",
                    pb::tensor_proto::DataType::Uint8,
                    vec![3],
                    vec![1, 2, 3],
                ),
                crate::onnx_build::raw_tensor(
                    "big",
                    pb::tensor_proto::DataType::Uint8,
                    vec![big.len() as i64],
                    big,
                ),
            ],
            ..Default::default()
        };
        crate::onnx_build::model(graph, &[("k", "v")]).encode_to_vec()
    }

    #[test]
    fn a_model_read_in_chunks_equals_one_decoded_whole() {
        let bytes = model_bytes();
        let whole = pb::ModelProto::decode(bytes.as_slice()).unwrap();
        for step in [1, 1000, CHUNK, usize::MAX] {
            let mut buf = ReadBuf::new(Trickle(&bytes, step), bytes.len());
            let read = pb::ModelProto::decode(&mut buf).unwrap();
            assert!(buf.error.is_none());
            assert_eq!(read, whole, "reads of {step} bytes");
        }
    }

    #[test]
    fn a_short_file_is_an_error_that_says_so() {
        let bytes = model_bytes();
        // The reader ends early: the length promised more.
        let mut buf = ReadBuf::new(Trickle(&bytes[..bytes.len() / 2], 4096), bytes.len());
        assert!(pb::ModelProto::decode(&mut buf).is_err());
        let e = buf.error.expect("the early end is kept");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}

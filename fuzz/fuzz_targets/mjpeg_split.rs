//! A byte stream through the MJPEG splitter, read in odd-sized pieces as a pipe delivers them.
//! Every frame it returns starts with SOI, ends with EOI and respects the size cap, and frames
//! plus skipped garbage never exceed the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnext_edge::stream::mjpeg_split::{MjpegSplitter, Split};
use std::io::Read;

/// A reader that returns at most `step` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

const MAX_FRAME: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let reader = Trickle {
        data: stream,
        step: step as usize % 97 + 1,
    };
    let mut splitter = MjpegSplitter::with_max_frame(reader, MAX_FRAME);
    let mut frame_bytes = 0usize;
    loop {
        match splitter.next_frame().expect("reading memory cannot fail") {
            Split::Frame(f) => {
                assert!(f.starts_with(&[0xff, 0xd8]) && f.ends_with(&[0xff, 0xd9]));
                assert!(f.len() <= MAX_FRAME);
                frame_bytes += f.len();
            }
            Split::Corrupt(reason) => assert!(!reason.is_empty()),
            Split::End => break,
        }
    }
    assert!(frame_bytes as u64 + splitter.garbage_bytes() <= stream.len() as u64);
});

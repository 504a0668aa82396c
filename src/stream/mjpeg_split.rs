//! Splits a byte stream of concatenated JPEG frames (what `ffmpeg -f mjpeg`, `rpicam-vid --codec
//! mjpeg` and a GStreamer `jpegenc ! fdsink` write) into frames.
//!
//! Looking for the next `FF D8` is not enough: an EXIF thumbnail holds a whole JPEG, and a frame
//! cut short by a dying camera looks like the start of a longer one. So the splitter walks the
//! marker segments by their lengths and the entropy-coded data by its byte stuffing (in it, `FF`
//! is only ever followed by `00` or a restart marker), which finds each frame's real end (`FF D9`)
//! and notices a frame that stops early (a new `FF D8` where data should continue). Bytes between
//! frames are skipped and counted; a frame that breaks the syntax, or grows past the size limit,
//! is reported as corrupt and the splitter resynchronizes on the next `FF D8`. Memory is bounded by
//! the largest frame allowed.

use std::io::{self, Read};

/// Frames larger than this are refused (a 4K MJPEG frame is a few MB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 32 << 20;

/// What the splitter found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A complete frame, `FF D8` to `FF D9` inclusive.
    Frame(Vec<u8>),
    /// A frame that started but was not a valid JPEG stream (the reason says where it broke).
    Corrupt(String),
    /// End of input.
    End,
}

/// Splits JPEG frames out of a reader.
pub struct MjpegSplitter<R> {
    reader: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    max_frame: usize,
    /// A `FF D8` already consumed that starts the next frame.
    pending_soi: bool,
    garbage_bytes: u64,
}

/// Why the current frame ended early.
enum Break {
    /// A new frame starts here (its SOI has been consumed).
    NewFrame(String),
    /// The frame is invalid; resynchronize on the next SOI.
    Invalid(String),
    /// End of input in the middle of the frame.
    Eof,
}

impl<R: Read> MjpegSplitter<R> {
    pub fn new(reader: R) -> Self {
        Self::with_max_frame(reader, DEFAULT_MAX_FRAME_BYTES)
    }

    pub fn with_max_frame(reader: R, max_frame: usize) -> Self {
        MjpegSplitter {
            reader,
            buf: vec![0u8; 64 << 10].into_boxed_slice(),
            pos: 0,
            len: 0,
            max_frame,
            pending_soi: false,
            garbage_bytes: 0,
        }
    }

    /// Bytes skipped outside frames so far.
    pub fn garbage_bytes(&self) -> u64 {
        self.garbage_bytes
    }

    /// The next frame, a corrupt one, or the end. I/O errors other than interruptions end the
    /// stream with the error.
    pub fn next_frame(&mut self) -> io::Result<Split> {
        if !self.pending_soi && !self.find_soi()? {
            return Ok(Split::End);
        }
        self.pending_soi = false;
        let mut frame = vec![0xff, 0xd8];
        match self.read_frame_body(&mut frame)? {
            Ok(()) => Ok(Split::Frame(frame)),
            Err(Break::NewFrame(why)) => {
                self.pending_soi = true;
                Ok(Split::Corrupt(why))
            }
            Err(Break::Invalid(why)) => Ok(Split::Corrupt(why)),
            Err(Break::Eof) => Ok(Split::Corrupt(format!(
                "truncated: input ended {} bytes into the frame",
                frame.len()
            ))),
        }
    }

    /// Refills the buffer if it is empty; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        if !self.fill()? {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    /// Skips to just after the next `FF D8`; false at end of input.
    fn find_soi(&mut self) -> io::Result<bool> {
        let mut after_ff = false;
        while let Some(b) = self.byte()? {
            if after_ff && b == 0xd8 {
                return Ok(true);
            }
            if after_ff {
                self.garbage_bytes += 1; // the FF before a byte that was not D8
            }
            after_ff = b == 0xff;
            if !after_ff {
                self.garbage_bytes += 1;
            }
        }
        if after_ff {
            self.garbage_bytes += 1;
        }
        Ok(false)
    }

    fn push(&self, frame: &mut Vec<u8>, bytes: &[u8]) -> Result<(), Break> {
        if frame.len() + bytes.len() > self.max_frame {
            return Err(Break::Invalid(format!(
                "frame larger than {} bytes",
                self.max_frame
            )));
        }
        frame.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads marker segments and scans after `SOI` up to and including `EOI`.
    fn read_frame_body(&mut self, frame: &mut Vec<u8>) -> io::Result<Result<(), Break>> {
        loop {
            // A marker: FF, optional fill FFs, then its code.
            let Some(b) = self.byte()? else {
                return Ok(Err(Break::Eof));
            };
            if b != 0xff {
                return Ok(Err(Break::Invalid(format!(
                    "byte {b:#04x} at offset {} where a marker should start",
                    frame.len()
                ))));
            }
            let code = match self.marker_code(frame)? {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            match self.marker(frame, code)? {
                Ok(true) => return Ok(Ok(())),
                Ok(false) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// The code byte after a marker's `FF`. Fill bytes (more `FF`s) are kept in the frame, so
    /// that frames come out byte for byte as they went in.
    fn marker_code(&mut self, frame: &mut Vec<u8>) -> io::Result<Result<u8, Break>> {
        loop {
            match self.byte()? {
                None => return Ok(Err(Break::Eof)),
                Some(0xff) => {
                    if let Err(e) = self.push(frame, &[0xff]) {
                        return Ok(Err(e));
                    }
                }
                Some(c) => return Ok(Ok(c)),
            }
        }
    }

    /// Handles one marker (its `FF` already read); true when it ended the frame.
    fn marker(&mut self, frame: &mut Vec<u8>, code: u8) -> io::Result<Result<bool, Break>> {
        match code {
            0xd9 => {
                return Ok(self.push(frame, &[0xff, 0xd9]).map(|()| true));
            }
            0xd8 => {
                return Ok(Err(Break::NewFrame(format!(
                    "truncated: a new frame started {} bytes into this one",
                    frame.len()
                ))))
            }
            0x00 => {
                return Ok(Err(Break::Invalid(format!(
                    "stuffed byte outside entropy-coded data at offset {}",
                    frame.len()
                ))))
            }
            0x01 | 0xd0..=0xd7 => return Ok(self.push(frame, &[0xff, code]).map(|()| false)),
            _ => {}
        }
        // A segment with a length.
        let (Some(hi), Some(lo)) = (self.byte()?, self.byte()?) else {
            return Ok(Err(Break::Eof));
        };
        let seg_len = u16::from_be_bytes([hi, lo]) as usize;
        if seg_len < 2 {
            return Ok(Err(Break::Invalid(format!(
                "marker {code:#04x} with length {seg_len} at offset {}",
                frame.len()
            ))));
        }
        if let Err(e) = self.push(frame, &[0xff, code, hi, lo]) {
            return Ok(Err(e));
        }
        let mut left = seg_len - 2;
        while left > 0 {
            if !self.fill()? {
                return Ok(Err(Break::Eof));
            }
            let n = left.min(self.len - self.pos);
            let (start, end) = (self.pos, self.pos + n);
            if frame.len() + n > self.max_frame {
                return Ok(Err(Break::Invalid(format!(
                    "frame larger than {} bytes",
                    self.max_frame
                ))));
            }
            frame.extend_from_slice(&self.buf[start..end]);
            self.pos = end;
            left -= n;
        }
        if code == 0xda {
            return self.entropy_data(frame);
        }
        Ok(Ok(false))
    }

    /// Copies entropy-coded data after a start-of-scan header, up to the next real marker, and
    /// handles that marker.
    fn entropy_data(&mut self, frame: &mut Vec<u8>) -> io::Result<Result<bool, Break>> {
        loop {
            if !self.fill()? {
                return Ok(Err(Break::Eof));
            }
            let chunk = &self.buf[self.pos..self.len];
            let run = chunk.iter().position(|&b| b == 0xff).unwrap_or(chunk.len());
            if frame.len() + run > self.max_frame {
                return Ok(Err(Break::Invalid(format!(
                    "frame larger than {} bytes",
                    self.max_frame
                ))));
            }
            frame.extend_from_slice(&chunk[..run]);
            self.pos += run;
            if self.pos == self.len {
                continue;
            }
            self.pos += 1; // the FF
            let code = match self.marker_code(frame)? {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            match code {
                0x00 | 0xd0..=0xd7 => {
                    if let Err(e) = self.push(frame, &[0xff, code]) {
                        return Ok(Err(e));
                    }
                }
                // A marker ends the scan (EOI, or the tables and next scan of a progressive JPEG).
                _ => return self.marker(frame, code),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically complete small JPEG: SOI, an APP0, a DQT-like segment, SOS header,
    /// entropy data with stuffing and a restart marker, EOI.
    fn frame(tag: u8) -> Vec<u8> {
        let mut f = vec![0xff, 0xd8];
        f.extend_from_slice(&[0xff, 0xe0, 0x00, 0x06, b'J', b'F', b'I', tag]);
        // A segment whose payload contains FF D8 and FF D9: lengths, not scanning, skip it.
        f.extend_from_slice(&[0xff, 0xe1, 0x00, 0x08, 0xff, 0xd8, 0xff, 0xd9, 0x00, tag]);
        f.extend_from_slice(&[0xff, 0xda, 0x00, 0x04, 0x01, 0x02]);
        f.extend_from_slice(&[
            0x12, 0xff, 0x00, 0x34, tag, 0xff, 0xd3, 0x56, 0xff, 0xff, 0x00,
        ]);
        f.extend_from_slice(&[0xff, 0xd9]);
        f
    }

    fn split_all(bytes: &[u8]) -> (Vec<Split>, u64) {
        // A reader that returns 3 bytes at a time exercises every refill boundary.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut s = MjpegSplitter::new(Trickle(bytes));
        let mut out = Vec::new();
        loop {
            match s.next_frame().unwrap() {
                Split::End => break,
                x => out.push(x),
            }
        }
        (out, s.garbage_bytes())
    }

    #[test]
    fn splits_concatenated_frames_exactly() {
        let mut stream = frame(1);
        stream.extend(frame(2));
        stream.extend(frame(3));
        let (out, garbage) = split_all(&stream);
        assert_eq!(
            out,
            vec![
                Split::Frame(frame(1)),
                Split::Frame(frame(2)),
                Split::Frame(frame(3))
            ]
        );
        assert_eq!(garbage, 0);
    }

    #[test]
    fn skips_and_counts_garbage_between_frames() {
        let mut stream = b"hello\xff\x00".to_vec();
        stream.extend(frame(1));
        stream.extend_from_slice(b"xyz");
        stream.extend(frame(2));
        stream.extend_from_slice(b"\xff");
        let (out, garbage) = split_all(&stream);
        assert_eq!(out, vec![Split::Frame(frame(1)), Split::Frame(frame(2))]);
        assert_eq!(garbage, 7 + 3 + 1);
    }

    #[test]
    fn a_frame_cut_short_is_corrupt_and_the_next_one_survives() {
        let f = frame(1);
        let mut stream = f[..f.len() - 6].to_vec(); // cut inside the entropy data
        stream.extend(frame(2));
        let (out, _) = split_all(&stream);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Split::Corrupt(why) if why.contains("truncated")));
        assert_eq!(out[1], Split::Frame(frame(2)));
    }

    #[test]
    fn broken_syntax_resynchronizes_on_the_next_frame() {
        let mut stream = vec![0xff, 0xd8, 0x12, 0x34, 0x56];
        stream.extend(frame(2));
        // A segment length running past the size limit.
        stream.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe0, 0xff, 0xff]);
        stream.extend(vec![0u8; 70_000]);
        stream.extend(frame(3));
        let mut s = MjpegSplitter::with_max_frame(&stream[..], 1000);
        let a = s.next_frame().unwrap();
        assert!(
            matches!(&a, Split::Corrupt(why) if why.contains("0x12")),
            "{a:?}"
        );
        assert_eq!(s.next_frame().unwrap(), Split::Frame(frame(2)));
        let c = s.next_frame().unwrap();
        assert!(
            matches!(&c, Split::Corrupt(why) if why.contains("larger")),
            "{c:?}"
        );
        assert_eq!(s.next_frame().unwrap(), Split::Frame(frame(3)));
        assert_eq!(s.next_frame().unwrap(), Split::End);
    }

    #[test]
    fn input_ending_inside_a_frame_is_a_truncated_frame() {
        let f = frame(1);
        for cut in [2, 5, 12, f.len() - 1] {
            let (out, _) = split_all(&f[..cut]);
            assert_eq!(out.len(), 1, "cut {cut}");
            assert!(matches!(&out[0], Split::Corrupt(why) if why.contains("truncated")));
        }
    }

    #[test]
    fn real_ffmpeg_style_frames_from_the_fixtures_split_and_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        names.sort();
        assert!(names.len() >= 2);
        let frames: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let stream: Vec<u8> = frames.concat();
        let (out, garbage) = split_all(&stream);
        assert_eq!(garbage, 0);
        assert_eq!(out.len(), frames.len());
        for (o, f) in out.iter().zip(&frames) {
            // Real files may carry bytes after EOI; the frame is everything up to it.
            match o {
                Split::Frame(b) => assert!(f.starts_with(b) && crate::jpeg::decode(b).is_ok()),
                other => panic!("{other:?}"),
            }
        }
    }
}

//! `raw:WxH:rgb24:-|FILE`: packed RGB frames of one size.

use crate::stream::source::{Captured, FrameSource};
use std::io::Read;

/// `raw:`: packed RGB frames of a known size.
pub struct RawSource {
    reader: Box<dyn Read + Send>,
    width: u32,
    height: u32,
    live: bool,
}

impl RawSource {
    /// Frames of `width` x `height` packed RGB from `reader`; `live` as [`FrameSource::is_live`].
    pub fn new(reader: Box<dyn Read + Send>, width: u32, height: u32, live: bool) -> Self {
        RawSource {
            reader,
            width,
            height,
            live,
        }
    }
}

impl FrameSource for RawSource {
    fn next(&mut self) -> Captured {
        let len = self.width as usize * self.height as usize * 3;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("reading the stream failed: {e}");
                    break;
                }
            }
        }
        match got {
            0 => Captured::End,
            n if n < len => Captured::Corrupt(format!(
                "truncated: the input ended after {n} of the frame's {len} bytes"
            )),
            _ => match image::RgbImage::from_raw(self.width, self.height, buf) {
                Some(img) => Captured::Frame {
                    data: crate::stream::frame::FrameData::Rgb(img),
                    name: None,
                },
                None => Captured::Corrupt("frame buffer of the wrong size".into()),
            },
        }
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_and_a_truncated_tail() {
        let mut bytes: Vec<u8> = (0..2 * 12).map(|i| i as u8).collect();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut src = RawSource {
            reader: Box::new(std::io::Cursor::new(bytes)),
            width: 2,
            height: 2,
            live: true,
        };
        for first in [0u8, 12] {
            match src.next() {
                Captured::Frame {
                    data: crate::stream::frame::FrameData::Rgb(img),
                    ..
                } => assert_eq!(img.as_raw()[0], first),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(src.next(), Captured::Corrupt(w) if w.contains("3 of the frame's 12")));
        assert!(matches!(src.next(), Captured::End));
    }
}

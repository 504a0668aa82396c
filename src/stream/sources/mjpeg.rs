//! `mjpeg:-|FILE`: concatenated JPEG frames, split by [`crate::stream::mjpeg_split`].

use crate::stream::mjpeg_split::{MjpegSplitter, Split};
use crate::stream::source::{Captured, FrameSource};
use std::io::Read;

/// `mjpeg:`: JPEG frames split out of a byte stream.
pub struct MjpegSource<R> {
    splitter: MjpegSplitter<R>,
    live: bool,
    garbage_reported: u64,
}

impl<R: Read + Send> MjpegSource<R> {
    pub fn new(reader: R, live: bool) -> Self {
        MjpegSource {
            splitter: MjpegSplitter::new(reader),
            live,
            garbage_reported: 0,
        }
    }

    /// The next frame of the stream; an I/O error ends it (logged).
    pub fn next_split(&mut self) -> Captured {
        let r = self.splitter.next_frame();
        let garbage = self.splitter.garbage_bytes();
        if garbage > self.garbage_reported {
            log::warn!(
                "skipped {} bytes between frames",
                garbage - self.garbage_reported
            );
            self.garbage_reported = garbage;
        }
        match r {
            Ok(Split::Frame(bytes)) => Captured::Frame {
                data: crate::stream::frame::FrameData::Encoded(bytes),
                name: None,
            },
            Ok(Split::Corrupt(why)) => Captured::Corrupt(why),
            Ok(Split::End) => Captured::End,
            Err(e) => {
                log::error!("reading the stream failed: {e}");
                Captured::End
            }
        }
    }
}

impl<R: Read + Send> FrameSource for MjpegSource<R> {
    fn next(&mut self) -> Captured {
        self.next_split()
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

//! What every frame source is: the [`FrameSource`] trait the capture thread pulls from, and
//! what a pull yields ([`Captured`]). The sources themselves are in [`super::sources`];
//! [`super::spec`] parses `--source` and opens one.

/// What a source yields, one call at a time.
#[derive(Debug)]
pub enum Captured {
    Frame {
        data: super::frame::FrameData,
        /// A name for messages (a file path), when frames have one.
        name: Option<String>,
    },
    /// A frame that was read but is unusable; the reason names where it broke.
    Corrupt(String),
    /// The source has ended normally.
    End,
    /// The source cannot deliver frames at all (a capture command that cannot run, a camera
    /// that cannot be reopened): the stream ends with this reason as its error.
    Failed(String),
}

/// A source of frames, pulled by the capture thread.
pub trait FrameSource: Send {
    fn next(&mut self) -> Captured;
    /// True when frames arrive at their own pace (a camera, a pipe) and the newest should win;
    /// false when every frame can wait to be classified (files).
    fn is_live(&self) -> bool;
    /// Something to call when the stream stops while the capture thread may still be blocked
    /// in a read (a capture command to kill).
    fn stopper(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        None
    }
}

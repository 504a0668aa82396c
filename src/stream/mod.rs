//! `resnext-edge stream`: classify frames as they come, from a folder, an MJPEG or raw pipe, a
//! capture command or a V4L2 camera.
//!
//! Capture runs on its own thread and hands frames over through a one-frame slot
//! ([`slot::FrameSlot`]): inference always takes the newest frame, so a slow model never makes
//! the camera lag, and what it skipped is counted as dropped. Corrupt frames are counted and
//! skipped. Whatever happens, `frames_read = processed + dropped + corrupt`.

pub mod frame;
pub mod mjpeg_split;
pub mod run;
pub mod slot;
pub mod source;
pub mod sources;
pub mod spec;

pub use frame::{Frame, FrameData};
pub use run::{run, Event, FrameResult, Options, SourceFailed, Stats};
pub use slot::Counts;
pub use source::{Captured, FrameSource};
pub use sources::command::Restarts;
pub use spec::{SourceSpec, SOURCE_SYNTAX};

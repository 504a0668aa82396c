//! What a source hands to inference: a frame, its place in the stream and its pixels.

use std::time::Instant;

/// A frame as captured.
#[derive(Debug)]
pub struct Frame {
    /// Position in the stream, from 0, counting every frame read (corrupt ones included).
    pub seq: u64,
    pub captured: Instant,
    /// A name for messages (the file of a `dir:` source).
    pub name: Option<String>,
    pub data: FrameData,
}

/// A frame's pixels: still encoded (decoded on the inference side, so that capture stays
/// cheap), or already RGB.
#[derive(Debug)]
pub enum FrameData {
    Encoded(Vec<u8>),
    Rgb(image::RgbImage),
}

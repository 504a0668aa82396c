//! The frame sources, one per file: a folder of images, an MJPEG or raw RGB byte stream (a
//! pipe or a file), a capture command, a V4L2 camera.

pub mod command;
pub mod dir;
pub mod mjpeg;
pub mod raw;
pub mod v4l2;

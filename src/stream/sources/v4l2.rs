//! `v4l2:/dev/videoN[:WxH]`: a V4L2 camera (USB webcams, the Pi's camera through its V4L2
//! driver), behind the cargo feature `v4l2` (the `linuxvideo` crate: plain ioctls, no C).
//!
//! MJPEG is asked for first (the camera compresses, capture stays cheap, and frames decode
//! exactly like files); a camera that only offers YUYV 4:2:2 is converted to RGB with the
//! BT.601 limited-range integer formula. The device is checked when the source is opened and
//! streamed from the capture thread; when capture fails it is reopened once a second, and after
//! ten failed reopens in a row the source fails (the stream ends with exit code 1).

#[cfg(not(feature = "v4l2"))]
use crate::stream::source::FrameSource;
use std::path::Path;

/// Frame size asked of the camera when the source names none.
pub const DEFAULT_SIZE: (u32, u32) = (640, 480);

/// Splits `/dev/video0:1280x720` into the device and the requested size.
pub fn parse_device(spec: &Path) -> Result<(std::path::PathBuf, (u32, u32)), String> {
    let s = spec.to_string_lossy();
    if let Some((dev, size)) = s.rsplit_once(':') {
        let parsed = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
        return match parsed {
            Some((w, h)) if w > 0 && h > 0 => Ok((dev.into(), (w, h))),
            _ => Err(format!("`{s}`: expected /dev/videoN or /dev/videoN:WxH")),
        };
    }
    Ok((spec.to_path_buf(), DEFAULT_SIZE))
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels) to RGB, BT.601 limited range, integer arithmetic.
/// `stride` is the bytes per row of the source (at least `2 * width`).
pub fn yuyv_to_rgb(src: &[u8], width: u32, height: u32, stride: usize) -> Option<image::RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || w % 2 != 0 || stride < 2 * w || src.len() < stride * (h - 1) + 2 * w {
        return None;
    }
    let mut out = vec![0u8; w * h * 3];
    let clamp = |v: i32| (v >> 8).clamp(0, 255) as u8;
    for (row, dst) in out.chunks_exact_mut(w * 3).enumerate() {
        let line = &src[row * stride..row * stride + 2 * w];
        for (quad, px) in line.chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let d = quad[1] as i32 - 128;
            let e = quad[3] as i32 - 128;
            for (k, y) in [quad[0], quad[2]].into_iter().enumerate() {
                let c = 298 * (y as i32 - 16) + 128;
                px[3 * k] = clamp(c + 409 * e);
                px[3 * k + 1] = clamp(c - 100 * d - 208 * e);
                px[3 * k + 2] = clamp(c + 516 * d);
            }
        }
    }
    image::RgbImage::from_raw(width, height, out)
}

#[cfg(not(feature = "v4l2"))]
pub fn open(device: &Path) -> anyhow::Result<Box<dyn FrameSource>> {
    parse_device(device).map_err(anyhow::Error::msg)?;
    anyhow::bail!(
        "{}: this build has no V4L2 support (build with `--features v4l2`), or read the camera through a command: cmd:\"ffmpeg -f v4l2 -i {} -f mjpeg -\"",
        device.display(),
        device.display()
    )
}

#[cfg(feature = "v4l2")]
pub use camera::open;

#[cfg(feature = "v4l2")]
mod camera {
    use super::{parse_device, yuyv_to_rgb};
    use crate::stream::frame::FrameData;
    use crate::stream::source::{Captured, FrameSource};
    use anyhow::Context;
    use linuxvideo::format::{PixFormat, PixelFormat};
    use linuxvideo::stream::ReadStream;
    use linuxvideo::Device;
    use std::path::{Path, PathBuf};

    /// What the driver agreed to.
    #[derive(Clone, Copy)]
    struct Negotiated {
        width: u32,
        height: u32,
        bytes_per_line: u32,
        mjpeg: bool,
    }

    /// Reopens in a row (one a second) that fail before the source gives up.
    const MAX_FAILED_REOPENS: u32 = 10;

    struct Camera {
        device: PathBuf,
        size: (u32, u32),
        stream: Option<(ReadStream, Negotiated)>,
        /// Reopens that failed since capture last worked.
        failed_reopens: u32,
    }

    fn start(device: &Path, (w, h): (u32, u32)) -> std::io::Result<(ReadStream, Negotiated)> {
        let mut capture =
            Device::open(device)?.video_capture(PixFormat::new(w, h, PixelFormat::MJPG))?;
        if capture.format().pixel_format() != PixelFormat::MJPG {
            capture =
                Device::open(device)?.video_capture(PixFormat::new(w, h, PixelFormat::YUYV))?;
        }
        let f = capture.format();
        let mjpeg = f.pixel_format() == PixelFormat::MJPG;
        if !mjpeg && f.pixel_format() != PixelFormat::YUYV {
            return Err(std::io::Error::other(
                "the camera offers neither MJPEG nor YUYV frames",
            ));
        }
        let negotiated = Negotiated {
            width: f.width(),
            height: f.height(),
            bytes_per_line: f.bytes_per_line(),
            mjpeg,
        };
        log::info!(
            "{}: capturing {}x{} {}",
            device.display(),
            negotiated.width,
            negotiated.height,
            if mjpeg { "MJPEG" } else { "YUYV" }
        );
        Ok((capture.into_stream()?, negotiated))
    }

    pub fn open(spec: &Path) -> anyhow::Result<Box<dyn FrameSource>> {
        let (device, size) = parse_device(spec).map_err(anyhow::Error::msg)?;
        // Opened here so that a wrong device is an error at once.
        let stream = start(&device, size).with_context(|| format!("{}", device.display()))?;
        Ok(Box::new(Camera {
            device,
            size,
            stream: Some(stream),
            failed_reopens: 0,
        }))
    }

    impl FrameSource for Camera {
        fn next(&mut self) -> Captured {
            if self.stream.is_none() {
                std::thread::sleep(std::time::Duration::from_secs(1));
                match start(&self.device, self.size) {
                    Ok(s) => {
                        self.stream = Some(s);
                        self.failed_reopens = 0;
                    }
                    Err(e) => {
                        self.failed_reopens += 1;
                        let why = format!("{}: cannot restart capture: {e}", self.device.display());
                        // Gone for good (unplugged and not back): the stream ends with the error.
                        if self.failed_reopens >= MAX_FAILED_REOPENS {
                            return Captured::Failed(format!(
                                "{why} ({} attempts, one a second)",
                                self.failed_reopens
                            ));
                        }
                        return Captured::Corrupt(why);
                    }
                }
            }
            let (stream, f) = self.stream.as_mut().expect("started above");
            let f = *f;
            let got = stream.dequeue(|buf| {
                if buf.is_error() {
                    return Ok(None);
                }
                let bytes: &[u8] = &buf;
                Ok(Some(bytes.to_vec()))
            });
            match got {
                Ok(Some(bytes)) if f.mjpeg => Captured::Frame {
                    data: FrameData::Encoded(bytes),
                    name: None,
                },
                Ok(Some(bytes)) => {
                    match yuyv_to_rgb(&bytes, f.width, f.height, f.bytes_per_line as usize) {
                        Some(img) => Captured::Frame {
                            data: FrameData::Rgb(img),
                            name: None,
                        },
                        None => Captured::Corrupt(format!("YUYV frame of {} bytes", bytes.len())),
                    }
                }
                Ok(None) => Captured::Corrupt("the driver flagged the buffer as bad".into()),
                Err(e) => {
                    // Unplugged, or the driver gave up: reopen (after a pause) on the next call.
                    self.stream = None;
                    Captured::Corrupt(format!("{}: capture failed: {e}", self.device.display()))
                }
            }
        }

        fn is_live(&self) -> bool {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_greys_and_colours_with_the_bt601_formula() {
        // Two rows of 2 pixels, a stride of 6 bytes (2 bytes of padding per row).
        let src = [16, 128, 235, 128, 0, 0, 82, 90, 82, 240, 0, 0];
        let img = yuyv_to_rgb(&src, 2, 2, 6).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        // BT.601 red is Y 82, Cb 90, Cr 240.
        let red = img.get_pixel(0, 1).0;
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
        assert!(yuyv_to_rgb(&src, 3, 2, 6).is_none(), "odd width");
        assert!(yuyv_to_rgb(&src[..8], 2, 2, 6).is_none(), "short buffer");
    }

    #[test]
    fn device_with_an_optional_size() {
        assert_eq!(
            parse_device(Path::new("/dev/video0")).unwrap(),
            ("/dev/video0".into(), DEFAULT_SIZE)
        );
        assert_eq!(
            parse_device(Path::new("/dev/video2:1280x720")).unwrap(),
            ("/dev/video2".into(), (1280, 720))
        );
        assert!(parse_device(Path::new("/dev/video0:big")).is_err());
    }
}

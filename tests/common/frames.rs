//! The stream tests' camera: real JPEG frames encoded here (baseline JFIF, as a webcam or
//! `ffmpeg -f mjpeg` writes them), so that the tests need no capture program. Each frame is
//! a test pattern of colour bars shifted by its number, so that no two frames are the same.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

/// `n` JPEG frames of `width` x `height`.
pub fn jpeg_frames(width: u16, height: u16, n: usize) -> Vec<Vec<u8>> {
    const BARS: [[u8; 3]; 7] = [
        [235, 235, 235],
        [235, 235, 16],
        [16, 235, 235],
        [16, 235, 16],
        [235, 16, 235],
        [235, 16, 16],
        [16, 16, 235],
    ];
    let (w, h) = (usize::from(width), usize::from(height));
    (0..n)
        .map(|f| {
            let mut rgb = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let bar = ((x + 4 * f) * BARS.len() / w) % BARS.len();
                    let [r, g, b] = BARS[bar];
                    // A vertical ramp so that the blocks are not flat.
                    let shade = (y * 32 / h) as u8;
                    rgb.extend_from_slice(&[r.saturating_sub(shade), g, b.saturating_sub(shade)]);
                }
            }
            let mut jpeg = Vec::new();
            jpeg_encoder::Encoder::new(&mut jpeg, 85)
                .encode(&rgb, width, height, jpeg_encoder::ColorType::Rgb)
                .expect("encoding into memory");
            jpeg
        })
        .collect()
}

/// The frames one after the other: an MJPEG stream.
pub fn mjpeg(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// `n` frames of packed RGB, one colour.
pub fn raw_rgb(width: usize, height: usize, n: usize, rgb: [u8; 3]) -> Vec<u8> {
    rgb.repeat(width * height * n)
}

/// Whether ffmpeg can be run. Where it cannot, a test that needs it says on the terminal (past
/// the test harness's capture) that it did not run, and returns; with
/// `RESNEXT_EDGE_REQUIRE_FFMPEG=1` (CI) a missing ffmpeg fails the test instead.
pub fn have_ffmpeg(test: &str) -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok_and(|mut child| {
            let what = "`ffmpeg -version`";
            super::deadline::wait_within(&mut child, Duration::from_secs(60), what, String::new)
                .success()
        });
    if !ok {
        assert!(
            std::env::var_os("RESNEXT_EDGE_REQUIRE_FFMPEG").is_none_or(|v| v != "1"),
            "{test}: ffmpeg is required (RESNEXT_EDGE_REQUIRE_FFMPEG=1) but cannot be run"
        );
        let _ = writeln!(
            std::io::stderr(),
            "{test}: not run: it needs ffmpeg, which is not installed (apt-get install ffmpeg)"
        );
    }
    ok
}

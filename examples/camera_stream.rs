//! Classify a stream of frames with the library: any `--source` of `resnext-edge stream` (a
//! folder, an MJPEG or raw pipe, a capture command, a V4L2 camera with `--features v4l2`).
//!
//!     cargo run --example camera_stream [MODEL] [SOURCE] [MAX_FRAMES]
//!
//! Defaults: `target/example.int8.onnx` and `dir:examples/data/images`. On a Raspberry Pi:
//! `camera_stream model.onnx 'cmd:rpicam-vid -t 0 --codec mjpeg -o -' 100`; anywhere with ffmpeg:
//! `ffmpeg -f lavfi -i testsrc=size=640x480:rate=30 -f mjpeg - | camera_stream model.onnx mjpeg:- 50`.

use resnext_edge::classify::Classifier;
use resnext_edge::stream::{self, Event, Options, SourceSpec};
use std::sync::atomic::AtomicBool;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or("target/example.int8.onnx".into());
    let source: SourceSpec = args
        .next()
        .unwrap_or("dir:examples/data/images".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let max_frames = args.next().map(|n| n.parse()).transpose()?;

    let mut classifier = Classifier::load(model.as_ref())?;
    // Live sources (pipes, commands, cameras) hand over the newest frame and count the rest
    // as dropped; folders and files are classified completely.
    let frames = source.open(Default::default())?;
    let opts = Options {
        top_k: 1,
        max_frames,
        stats_every: None,
        every_frame: false,
    };
    // Set from a signal handler to stop early; never set here.
    let stop = AtomicBool::new(false);
    let counts = stream::run(&mut classifier, frames, &opts, &stop, |event| match event {
        Event::Result(r) => println!(
            "frame {:>4}: {:<20} {:.2}  ({:.1} ms after capture)",
            r.frame, r.top[0].label, r.top[0].score, r.latency_ms
        ),
        Event::Corrupt { frame, error, .. } => println!("frame {frame:>4}: skipped ({error})"),
        Event::Stats(_) => {}
    })?;
    println!(
        "{} frames: {} classified, {} dropped, {} corrupt",
        counts.frames_read, counts.frames_processed, counts.frames_dropped, counts.frames_corrupt
    );
    Ok(())
}

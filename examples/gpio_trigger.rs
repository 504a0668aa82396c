//! Switch a pin when a class shows up: the trigger of `resnext-edge stream --trigger`, driven
//! by the classifications of a folder of frames.
//!
//!     cargo run --example gpio_trigger [MODEL] [FRAMES_DIR] [LABEL] [PIN]
//!
//! Defaults: `target/example.int8.onnx`, `examples/data/images`, `chelsea`, and `mock` (the
//! transitions are printed; nothing is touched). On a board, build with `--features gpio` and
//! pass a pin as CHIP:LINE, e.g. `gpiochip0:17` (Pi 4) or `pinctrl-rp1:17` (Pi 5).

use resnext_edge::classify::Classifier;
use resnext_edge::gpio::{BoardPin, PinSpec, Trigger, TriggerSpec};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(args.next().unwrap_or("target/example.int8.onnx".into()));
    let frames = PathBuf::from(args.next().unwrap_or("examples/data/images".into()));
    let spec: TriggerSpec = args
        .next()
        .unwrap_or("chelsea".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let pin: PinSpec = args
        .next()
        .unwrap_or("mock".into())
        .parse()
        .map_err(anyhow::Error::msg)?;

    let mut classifier = Classifier::load(&model)?;
    let class = spec
        .resolve(classifier.labels())
        .map_err(anyhow::Error::msg)?;
    // High after 1 matching frame, low after 1 frame without: every change shows on this
    // short series. A camera would use a few frames each way against flicker.
    let mut trigger = Trigger::new(BoardPin::open(&pin)?, class, spec.min_score, 1, 1)?;

    let (files, _) = resnext_edge::inputs::collect(&[frames]);
    for f in &files {
        let c = classifier.classify_file(f, 1, false)?;
        let changed = trigger.observe(c.top.first())?;
        println!(
            "{}: {} ({:.2}){}",
            f.display(),
            c.top[0].label,
            c.top[0].score,
            match changed {
                Some(true) => "  -> pin high",
                Some(false) => "  -> pin low",
                None => "",
            }
        );
    }
    // The pin goes low when watching ends.
    trigger.finish()?;
    Ok(())
}

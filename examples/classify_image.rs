//! Classify one image with the library: load a model, decode, preprocess as mmclassification
//! does, run, rank.
//!
//!     cargo run --example classify_image [MODEL] [IMAGE]
//!
//! Defaults: `target/example.int8.onnx` (made by `bash examples/quickstart.sh`, or by the
//! `quantize_checkpoint` example) and the bundled photo of a cat.

use resnext_edge::classify::Classifier;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(args.next().unwrap_or("target/example.int8.onnx".into()));
    let image = PathBuf::from(
        args.next()
            .unwrap_or("examples/data/images/chelsea.jpg".into()),
    );

    // The model carries its labels and preprocessing (resize, crop, mean/std) in its metadata.
    // Int8 convolutions run on the native kernels where they are faster than stock tract.
    let mut classifier = Classifier::load(&model)?;
    println!(
        "{}: {} classes, {} int8 layers on native kernels",
        model.display(),
        classifier.labels().len(),
        classifier.model().native_ops()
    );

    // Decoding is libjpeg-turbo's (bit-exact with OpenCV's imread); errors name the file.
    let result = classifier.classify_file(&image, 3, false)?;
    for p in &result.top {
        println!("{:>6.2} %  {}", p.score * 100.0, p.label);
    }
    println!(
        "decode + preprocess {:.1} ms, inference {:.1} ms",
        result.preprocess_ms, result.latency_ms
    );
    Ok(())
}

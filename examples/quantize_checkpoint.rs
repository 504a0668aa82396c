//! Quantize a checkpoint from Rust: what `resnext-quantize quantize` does, as a library.
//!
//!     cargo run -p resnext-quantize --example quantize_checkpoint [CHECKPOINT] [CALIB_DIR] [OUT]
//!
//! Defaults: the bundled example checkpoint, its 32 calibration images, `target/example.int8.onnx`.

use resnext_quantize::export::{self, ArchRequest, WeightSource};
use resnext_quantize::quant;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let checkpoint = PathBuf::from(
        args.next()
            .unwrap_or("examples/data/resnext_tiny_trained.pth".into()),
    );
    let calib = PathBuf::from(args.next().unwrap_or("examples/data/calib".into()));
    let out = PathBuf::from(args.next().unwrap_or("target/example.int8.onnx".into()));

    // Read the checkpoint (torch zip, legacy or safetensors; mmcls or torchvision keys). The
    // architecture is inferred from the tensors; ask for a preset to have it checked too.
    let source = export::load_source(
        &WeightSource::Checkpoint(checkpoint.clone()),
        &ArchRequest::default(),
    )?;
    println!(
        "{}: ResNeXt-{} {:?}, {} groups x {}, {} classes",
        checkpoint.display(),
        resnext_edge::resnext::depth_of(&source.config.layers),
        source.config.layers,
        source.config.groups,
        source.config.width_per_group,
        source.config.num_classes
    );

    // Labels and preprocessing travel in the model's metadata.
    let metadata = export::metadata_for(&source, None)?;
    // The command line's defaults: QDQ, u8 activations, mse ranges, 1.5x headroom.
    let opts = quant::Options {
        quiet: true,
        ..Default::default()
    };
    let (model, summary) = quant::quantize(&source, metadata, &calib, &opts)?;

    // Written atomically: a failure never leaves half a model behind.
    let bytes = resnext_quantize::onnx_builder::encode(&model);
    resnext_quantize::atomic::write_atomic(&out, &bytes)?;
    println!(
        "wrote {} ({} bytes): {} tensors quantized, calibrated on {} images",
        out.display(),
        bytes.len(),
        summary.quantized_tensors,
        summary.images_used
    );
    Ok(())
}

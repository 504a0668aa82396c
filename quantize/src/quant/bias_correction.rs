//! Empirical bias correction: quantization shifts the mean of a convolution's output (weight
//! rounding is not zero-mean per channel once multiplied by non-zero-mean activations, and
//! clipped activations lose their tails). Running the calibration images through the float
//! model and through the simulated int8 model, the per-channel mean difference of every conv
//! output is measured and subtracted from that conv's bias.
//!
//! All convs are corrected at once from one measurement, so a layer's measured shift includes
//! what its inputs' corrections will remove: on the trained example model this over-corrects
//! (logit SQNR 23.68 -> 22.41 dB with mse ranges, 23.94 -> 23.44 dB with minmax). Off by
//! default (`--bias-correction`); a layer-by-layer version would not double count, at one pass
//! over the calibration images per layer.

use super::calibrate::{probe_model, run_all};
use crate::float_net::FloatNet;
use crate::image_pass::{progress, ImageSet};
use anyhow::Result;
use tract_onnx::pb;

/// Adjusts the biases of `net` so that `quantized` (the int8 model of `net`, QDQ) matches
/// `float` in per-channel output means over `images`.
pub fn correct(
    net: &mut FloatNet,
    float: &pb::ModelProto,
    quantized: &pb::ModelProto,
    images: &ImageSet,
    crop: usize,
    (jobs, quiet): (usize, bool),
) -> Result<()> {
    let names: Vec<String> = net.convs().iter().map(|c| c.shape.name.clone()).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let float_plan = probe_model(float, &refs, crop)?;
    let quant_plan = probe_model(quantized, &refs, crop)?;
    let mut sums: Vec<Vec<f64>> = net
        .convs()
        .iter()
        .map(|c| vec![0.0; c.shape.out_channels])
        .collect();
    let widths: Vec<usize> = sums.iter().map(Vec::len).collect();
    let bar = progress(images.len() as u64, "bias corr.", quiet);
    // Per image, per conv and channel, the mean shift; added in image order.
    images.pass(
        jobs,
        &bar,
        |_, x| {
            let f = run_all(&float_plan, &x, crop)?;
            let q = run_all(&quant_plan, &x, crop)?;
            f.iter()
                .zip(&q)
                .zip(&widths)
                .map(|((fo, qo), &width)| {
                    let (fv, qv) = (
                        fo.to_plain_array_view::<f32>()?,
                        qo.to_plain_array_view::<f32>()?,
                    );
                    let (fs, qs) = (
                        fv.as_slice().expect("contiguous"),
                        qv.as_slice().expect("contiguous"),
                    );
                    let plane = fs.len() / width;
                    Ok((0..width)
                        .map(|c| {
                            let range = c * plane..(c + 1) * plane;
                            qs[range.clone()]
                                .iter()
                                .zip(&fs[range])
                                .map(|(a, b)| (*a - *b) as f64)
                                .sum::<f64>()
                                / plane as f64
                        })
                        .collect::<Vec<f64>>())
                })
                .collect::<Result<Vec<_>>>()
        },
        |_, shifts| {
            for (sum, shift) in sums.iter_mut().zip(shifts) {
                for (s, d) in sum.iter_mut().zip(shift) {
                    *s += d;
                }
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let n = images.len() as f64;
    let mut convs = convs_mut(net);
    for (conv, sum) in convs.iter_mut().zip(&sums) {
        for (b, s) in conv.bias.iter_mut().zip(sum) {
            *b -= (s / n) as f32;
        }
    }
    Ok(())
}

fn convs_mut(net: &mut FloatNet) -> Vec<&mut crate::float_net::FoldedConv> {
    let mut v = vec![&mut net.stem];
    for b in &mut net.blocks {
        v.push(&mut b.conv1);
        v.push(&mut b.conv2);
        v.push(&mut b.conv3);
        if let Some(d) = &mut b.downsample {
            v.push(d);
        }
    }
    v
}

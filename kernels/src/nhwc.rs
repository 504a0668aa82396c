//! NHWC u8 tensors in and out of the native region: the network input quantized from planar
//! floats, and the pooling layers (max pool of the stem, the head's global average pool).

use crate::requant::round_half_even;
use crate::workers::in_chunks;

/// Quantizes planar floats `x` (`[channels][pixels]`) to interleaved u8 `out`
/// (`[pixels][channels]`): `round_half_even(v * recip) + zero`, saturated to a byte.
/// Pixels are split into `threads` ranges on the worker pool.
pub fn quantize_to_nhwc(
    x: &[f32],
    (channels, pixels): (usize, usize),
    recip: f32,
    zero: u8,
    out: &mut [u8],
    threads: usize,
) {
    assert!(x.len() == channels * pixels && out.len() == x.len());
    if channels == 0 || pixels == 0 {
        return;
    }
    let per = pixels.div_ceil(threads.max(1));
    // Each plane's values are quantized in blocks into a contiguous buffer (a loop the compiler
    // vectorizes), then interleaved: quantizing straight into the strided output kept it
    // scalar (27 instructions per value on aarch64).
    const BLOCK: usize = 64;
    in_chunks(out, per * channels, threads, &|i, chunk| {
        let p0 = i * per;
        let n = chunk.len() / channels;
        let mut q = [0u8; BLOCK];
        for (c, plane) in x.chunks_exact(pixels).enumerate() {
            let plane = &plane[p0..p0 + n];
            for (b, values) in plane.chunks(BLOCK).enumerate() {
                for (d, &v) in q.iter_mut().zip(values) {
                    *d = (round_half_even(v * recip) + zero as i32).clamp(0, 255) as u8;
                }
                let dst = chunk[(b * BLOCK) * channels + c..]
                    .iter_mut()
                    .step_by(channels);
                for (d, &v) in dst.zip(&q[..values.len()]) {
                    *d = v;
                }
            }
        }
    });
}

/// Global average pool of NHWC u8 `x` (`pixels` x `channels`), requantized: per channel
/// `round_half_even((sum - pixels * in_zero) as f32 * in_scale * (1 / pixels) * (1 / out_scale))
/// + out_zero`, saturated. The sum is exact, so every ISA gets the same bytes.
pub fn average_pool_nhwc(
    x: &[u8],
    (pixels, channels): (usize, usize),
    (in_scale, in_zero): (f32, i32),
    (out_scale, out_zero): (f32, i32),
    out: &mut [u8],
) {
    assert!(x.len() == pixels * channels && out.len() == channels && pixels > 0);
    let mut sums = vec![0i64; channels];
    for px in x.chunks_exact(channels) {
        for (s, &v) in sums.iter_mut().zip(px) {
            *s += v as i64;
        }
    }
    let (inv_n, inv_out) = ((pixels as f32).recip(), out_scale.recip());
    for (o, &s) in out.iter_mut().zip(&sums) {
        let mean = (s - pixels as i64 * in_zero as i64) as f32 * in_scale * inv_n;
        *o = (round_half_even(mean * inv_out) + out_zero).clamp(0, 255) as u8;
    }
}

/// Max pool on NHWC u8 (`kernel`, `stride`, symmetric `pad`); padded positions do not count.
/// Output rows are split into `threads` ranges on the worker pool.
#[allow(clippy::too_many_arguments)]
pub fn max_pool_nhwc(
    x: &[u8],
    (h, w, c): (usize, usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
    out: &mut [u8],
    threads: usize,
) {
    let oh = (h + 2 * pad - kernel) / stride + 1;
    let ow = (w + 2 * pad - kernel) / stride + 1;
    assert_eq!(out.len(), oh * ow * c);
    if out.is_empty() {
        return;
    }
    let rows = oh.div_ceil(threads.max(1));
    in_chunks(out, rows * ow * c, threads, &|i, chunk| {
        max_pool_rows(x, (h, w, c), (kernel, stride, pad), i * rows, chunk)
    });
}

/// The output rows from `oy0` on that `out` holds, of [`max_pool_nhwc`].
fn max_pool_rows(
    x: &[u8],
    (h, w, c): (usize, usize, usize),
    (kernel, stride, pad): (usize, usize, usize),
    oy0: usize,
    out: &mut [u8],
) {
    let ow = (w + 2 * pad - kernel) / stride + 1;
    for (r, row) in out.chunks_exact_mut(ow * c).enumerate() {
        let oy = oy0 + r;
        for ox in 0..ow {
            let dst = &mut row[ox * c..(ox + 1) * c];
            dst.fill(0);
            for ky in 0..kernel {
                let iy = (oy * stride + ky) as isize - pad as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..kernel {
                    let ix = (ox * stride + kx) as isize - pad as isize;
                    if ix < 0 || ix >= w as isize {
                        continue;
                    }
                    let at = (iy as usize * w + ix as usize) * c;
                    for (d, &v) in dst.iter_mut().zip(&x[at..at + c]) {
                        *d = (*d).max(v);
                    }
                }
            }
        }
    }
}

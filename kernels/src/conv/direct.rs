//! The direct path: the input copied once into a buffer padded with its zero point, and each
//! window read in place by a [`DirectU8`] kernel (grouped convolutions, which have too little
//! depth per group to pay for a gathered patch).

use super::pack::PackedConv;
use super::scratch::SCRATCH;
use crate::requant::LayerWeightSums;
use crate::workers::in_chunks;
use crate::{DirectShape, DirectU8, DirectU8Requant, RequantRows, MAX_ROWS};

impl PackedConv {
    /// Copies `x` into `xp` with a border of `pad` pixels holding the input zero point, the
    /// input of the [`DirectU8`] kernels, with `in_c` bytes per pixel (more than the input's
    /// channels when they are padded to a quad; the extra ones meet zero weights).
    pub(super) fn pad_input(&self, x: &[u8], in_c: usize, xp: &mut Vec<u8>, threads: usize) {
        let g = &self.geom;
        let (pw, ph, c) = (g.in_w + 2 * g.pad, g.in_h + 2 * g.pad, g.in_c);
        let zero = self.requant.in_zero as u8;
        // Every byte is written below, in parallel by rows; `resize` only sizes the buffer.
        xp.resize(ph * pw * in_c, zero);
        let rows = ph.div_ceil(threads.max(1));
        in_chunks(xp, rows * pw * in_c, threads, &|i, chunk| {
            for (r, dst) in chunk.chunks_exact_mut(pw * in_c).enumerate() {
                let Some(iy) = (i * rows + r).checked_sub(g.pad).filter(|&y| y < g.in_h) else {
                    dst.fill(zero);
                    continue;
                };
                let src = &x[iy * g.in_w * c..(iy + 1) * g.in_w * c];
                let (left, rest) = dst.split_at_mut(g.pad * in_c);
                let (mid, right) = rest.split_at_mut(g.in_w * in_c);
                left.fill(zero);
                right.fill(zero);
                if in_c == c {
                    mid.copy_from_slice(src);
                } else {
                    for (d, px) in mid.chunks_exact_mut(in_c).zip(src.chunks_exact(c)) {
                        d[..c].copy_from_slice(px);
                        d[c..].fill(zero);
                    }
                }
            }
        });
    }
}

/// A convolution on the [`DirectU8`] path.
pub(super) struct Direct<'a> {
    pub(super) conv: &'a PackedConv,
    pub(super) kernel: DirectU8,
    /// The kernel that requantizes its own tiles, if the ISA has one (then `kernel` is unused).
    pub(super) fused: Option<DirectU8Requant>,
    /// How `kernel`'s accumulators are requantized.
    pub(super) requant_rows: RequantRows,
    pub(super) shape: DirectShape,
    pub(super) w: &'a [i8],
    pub(super) bias: &'a [i32],
    /// Each output channel's sum of weights.
    pub(super) weight_sums: &'a LayerWeightSums,
}

impl Direct<'_> {
    /// Computes the output pixels `p_start..` that `out` holds from the padded input `xp`, in
    /// runs along one output row of at most [`MAX_ROWS`] pixels.
    pub(super) fn run_pixels(
        &self,
        xp: &[u8],
        residual: Option<&[u8]>,
        out: &mut [u8],
        p_start: usize,
    ) {
        let g = &self.conv.geom;
        let (ow, c, s) = (g.out_w(), g.out_c, g.stride);
        let row = self.shape.row;
        let mut scratch = SCRATCH.take();
        let (_, _, acc) = scratch.buffers(
            0,
            0,
            if self.fused.is_some() {
                0
            } else {
                MAX_ROWS * c
            },
        );
        let p_end = p_start + out.len() / c;
        let mut p0 = p_start;
        while p0 < p_end {
            let (oy, ox) = (p0 / ow, p0 % ow);
            let n = MAX_ROWS.min(p_end - p0).min(ow - ox);
            let base = oy * s * row + ox * s * self.shape.in_c;
            if let Some(fused) = self.fused {
                let rq = self
                    .conv
                    .requant
                    .for_kernel((self.bias, self.weight_sums), 0..c);
                let (at, xp) = (p0 * c, &xp[base..]);
                let out = &mut out[at - p_start * c..];
                fused(
                    &self.shape,
                    xp,
                    n,
                    self.w,
                    &rq,
                    residual.map(|r| &r[at..]),
                    out,
                );
                p0 += n;
                continue;
            }
            let acc = &mut acc[..n * c];
            for a in acc.chunks_exact_mut(c) {
                a.copy_from_slice(self.bias);
            }
            (self.kernel)(&self.shape, &xp[base..], n, self.w, acc);
            let (at, local) = (p0 * c, (p0 - p_start) * c);
            self.conv.requant.apply_rows(
                self.requant_rows,
                acc,
                &self.conv.requant.multiplier,
                residual.map(|rv| &rv[at..at + n * c]),
                &mut out[local..local + n * c],
            );
            p0 += n;
        }
        SCRATCH.set(scratch);
    }
}

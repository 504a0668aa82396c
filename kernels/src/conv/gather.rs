//! The gather path: for each block of output pixels and each group, the input patch (taps x
//! channels; the zero point where a window leaves the image) gathered into rows for a dot
//! kernel, or the input's rows read in place by a pointwise one.

use super::geometry::ConvGeometry;
use super::pack::{PackedConv, PackedWeights};
use super::scratch::SCRATCH;
use crate::{DotU8Requant, Kernel, RequantRows, MAX_ROWS};

/// The most gathered patch rows one call of a requantizing dot kernel takes.
const MAX_GATHERED: usize = 256;

impl PackedConv {
    /// Computes the output pixels `p_start..` that `out` (a slice of the whole output) holds,
    /// with the dot `kernel`, or the `fused` one (which requantizes too) if there is one.
    pub(super) fn run_pixels(
        &self,
        (kernel, fused, requant_rows): (Kernel, Option<DotU8Requant>, RequantRows),
        x: &[u8],
        residual: Option<&[u8]>,
        out: &mut [u8],
        p_start: usize,
    ) {
        let g = &self.geom;
        let (ow, k, s, p) = (g.out_w(), g.kernel, g.stride, g.pad);
        let (cin, cout) = (g.cpg_in(), g.cpg_out());
        let zx = self.requant.in_zero;
        // The depth one patch row holds, and the bias the accumulators start from.
        let (depth, bias) = match (&kernel, &self.packed) {
            (Kernel::I16(_), PackedWeights::I16(_)) => (g.depth_padded(), &self.bias),
            (Kernel::U8(_), PackedWeights::U8 { bias, .. }) => (g.depth_bytes(), bias),
            _ => panic!("weights packed for another kernel family"),
        };
        // A pointwise conv over the whole input reads its rows in place (u8 family).
        // A dense convolution on u8 quads gathers each window row in one copy.
        let dense_u8 = matches!(kernel, Kernel::U8(_)) && g.groups == 1;
        let in_place = matches!(kernel, Kernel::U8(_))
            && k == 1
            && s == 1
            && p == 0
            && g.groups == 1
            && cin == depth;
        let n16 = if matches!(kernel, Kernel::I16(_)) {
            MAX_ROWS * depth
        } else {
            0
        };
        let p_end = p_start + out.len() / g.out_c;
        // Rows per kernel call. A kernel that requantizes its own tiles takes many at once, so
        // that each weight panel streams from memory once, not once per 32 rows: all of them
        // when it reads them in place, up to 256 gathered ones of a pointwise convolution (its
        // patch rows are its input pixels; a window's would take more memory than they save).
        let block = match fused {
            Some(_) if in_place => p_end - p_start,
            Some(_) if k == 1 => MAX_GATHERED.min(p_end - p_start).max(MAX_ROWS),
            _ => MAX_ROWS,
        };
        let n8 = if matches!(kernel, Kernel::U8(_)) && !in_place {
            block * depth
        } else {
            0
        };
        let mut scratch = SCRATCH.take();
        let (patch16, patch8, acc) =
            scratch.buffers(n16, n8, if fused.is_some() { 0 } else { MAX_ROWS * cout });
        let mut p0 = p_start;
        while p0 < p_end {
            let rows = block.min(p_end - p0);
            for grp in 0..g.groups {
                let c0 = grp * cout;
                if fused.is_none() {
                    for a in acc[..rows * cout].chunks_exact_mut(cout) {
                        a.copy_from_slice(&bias[c0..c0 + cout]);
                    }
                }
                if !in_place {
                    for r in 0..rows {
                        let (oy, ox) = ((p0 + r) / ow, (p0 + r) % ow);
                        if dense_u8 {
                            let row = &mut patch8[r * depth..][..k * k * cin];
                            if gather_inside(row, x, (oy * s, ox * s), g) {
                                continue;
                            }
                        }
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            if dense_u8 {
                                // The row's k taps of every channel are k * cin bytes in a row
                                // of the input, where they fall inside it.
                                let row = &mut patch8[r * depth + ky * k * cin..][..k * cin];
                                gather_row(row, x, (iy, (ox * s) as isize - p as isize), g, zx);
                                continue;
                            }
                            for kx in 0..k {
                                let ix = (ox * s + kx) as isize - p as isize;
                                let d0 = r * depth + (ky * k + kx) * cin;
                                let outside = iy < 0
                                    || ix < 0
                                    || iy >= g.in_h as isize
                                    || ix >= g.in_w as isize;
                                let at = if outside {
                                    0
                                } else {
                                    (iy as usize * g.in_w + ix as usize) * g.in_c + grp * cin
                                };
                                match kernel {
                                    // Outside the image: x = in_zero, which is 0 once shifted.
                                    Kernel::I16(_) => {
                                        let dst = &mut patch16[d0..d0 + cin];
                                        if outside {
                                            dst.fill(0);
                                        } else {
                                            for (d, &v) in dst.iter_mut().zip(&x[at..at + cin]) {
                                                *d = v as i16 - zx as i16;
                                            }
                                        }
                                    }
                                    Kernel::U8(_) => {
                                        let dst = &mut patch8[d0..d0 + cin];
                                        if outside {
                                            dst.fill(zx as u8);
                                        } else {
                                            copy_small(dst, &x[at..at + cin]);
                                        }
                                    }
                                }
                            }
                        }
                        // The depth's padding (never written here: whatever an earlier layer
                        // left in the scratch buffer) meets zero weights.
                    }
                }
                let weights = (c0 * depth)..(c0 + cout) * depth;
                let rows_patch = if in_place {
                    &x[p0 * cin..(p0 + rows) * cin]
                } else {
                    &patch8[..]
                };
                if let (Some(fused), PackedWeights::U8 { w, weight_sums, .. }) =
                    (fused, &self.packed)
                {
                    let at = p0 * g.out_c + c0;
                    let rq = self.requant.for_kernel((bias, weight_sums), c0..c0 + cout);
                    let res = residual.map(|r| &r[at..]);
                    let out = &mut out[at - p_start * g.out_c..];
                    fused(
                        rows,
                        rows_patch,
                        depth,
                        &w[weights],
                        cout,
                        &rq,
                        res,
                        out,
                        g.out_c,
                    );
                    continue;
                }
                let acc = &mut acc[..rows * cout];
                match (kernel, &self.packed) {
                    (Kernel::I16(dot), PackedWeights::I16(w)) => {
                        dot(rows, patch16, depth, &w[weights], cout, acc);
                    }
                    (Kernel::U8(dot), PackedWeights::U8 { w, .. }) => {
                        dot(rows, rows_patch, depth, &w[weights], cout, acc);
                    }
                    _ => unreachable!("checked above"),
                }
                self.write_rows(
                    requant_rows,
                    acc,
                    (p0, p_start),
                    c0..c0 + cout,
                    residual,
                    out,
                );
            }
            p0 += rows;
        }
        SCRATCH.set(scratch);
    }
}

/// The window at padded position `(py, px)` (the input's `(py - pad, px - pad)`) of a dense
/// convolution into `patch` (its `k` rows of `k * in_c` bytes), if the window lies inside the
/// input: one copy per window row and no test per tap (most of a stem's windows; the others
/// take [`gather_row`]). Whether it did.
#[inline(always)]
fn gather_inside(patch: &mut [u8], x: &[u8], (py, px): (usize, usize), g: &ConvGeometry) -> bool {
    let (k, c, pad) = (g.kernel, g.in_c, g.pad);
    let inside = py >= pad && px >= pad && py - pad + k <= g.in_h && px - pad + k <= g.in_w;
    if !inside {
        return false;
    }
    let (row, stride) = (k * c, g.in_w * c);
    let at = ((py - pad) * g.in_w + (px - pad)) * c;
    for (ky, dst) in patch.chunks_exact_mut(row).enumerate() {
        copy_bytes(dst, &x[at + ky * stride..][..row]);
    }
    true
}

/// One window row of a dense convolution's patch: the `kernel` taps from input pixel
/// `(iy, ix0)` on, every channel (`row` holds `kernel * in_c` bytes), the input zero point `zx`
/// where they leave the image.
#[inline]
fn gather_row(row: &mut [u8], x: &[u8], (iy, ix0): (isize, isize), g: &ConvGeometry, zx: i32) {
    // The taps from the geometry, not `row.len() / in_c`: a division per window row was a
    // good part of the stem's gather.
    let (c, taps) = (g.in_c, g.kernel);
    debug_assert_eq!(row.len(), taps * c);
    if iy < 0 || iy >= g.in_h as isize {
        return row.fill(zx as u8);
    }
    // Taps lo..hi are inside the image.
    let lo = (-ix0).clamp(0, taps as isize) as usize;
    let hi = (g.in_w as isize - ix0).clamp(lo as isize, taps as isize) as usize;
    if lo > 0 {
        row[..lo * c].fill(zx as u8);
    }
    if hi < taps {
        row[hi * c..].fill(zx as u8);
    }
    if hi > lo {
        let at = (iy as usize * g.in_w + (ix0 + lo as isize) as usize) * c;
        copy_bytes(&mut row[lo * c..hi * c], &x[at..at + (hi - lo) * c]);
    }
}

/// `dst.copy_from_slice(src)`, without a library call for the short rows of a stem's window
/// (7 taps x 3 channels: two overlapping 16-byte moves).
#[inline(always)]
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    let n = dst.len();
    match n {
        16..=32 => {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        }
        8..=15 => {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// `dst.copy_from_slice(src)` without a call for the 4- and 8-channel groups of ResNeXt's
/// grouped convs.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    match dst.len() {
        3 => dst.copy_from_slice(&src[..3]),
        4 => dst.copy_from_slice(&src[..4]),
        8 => dst.copy_from_slice(&src[..8]),
        16 => dst.copy_from_slice(&src[..16]),
        _ => dst.copy_from_slice(src),
    }
}

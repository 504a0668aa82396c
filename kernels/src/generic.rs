//! The definition of every kernel's result, in plain Rust.

/// `acc[r][o] += sum_j (patch[r][2j] * w[j][o][0] + patch[r][2j+1] * w[j][o][1])`, `w` in
/// panels of [`crate::signatures::PANEL`] outputs.
pub fn dot_i16(rows: usize, patch: &[i16], kp: usize, w: &[i16], n: usize, acc: &mut [i32]) {
    assert!(kp.is_multiple_of(2));
    assert!(crate::signatures::fits(
        rows,
        kp,
        n,
        patch.len(),
        w.len(),
        acc.len()
    ));
    for (o0, width) in crate::signatures::panels(n) {
        let wp = &w[o0 * kp..(o0 + width) * kp];
        for r in 0..rows {
            let p = &patch[r * kp..(r + 1) * kp];
            let a = &mut acc[r * n + o0..r * n + o0 + width];
            for (j, pair) in p.chunks_exact(2).enumerate() {
                let (x0, x1) = (pair[0] as i32, pair[1] as i32);
                let wj = &wp[j * width * 2..(j + 1) * width * 2];
                for (o, acc) in a.iter_mut().enumerate() {
                    *acc += x0 * wj[2 * o] as i32 + x1 * wj[2 * o + 1] as i32;
                }
            }
        }
    }
}

/// `acc[r][o] += sum_q sum_t patch[r][4q + t] * w[q][o][t]`, patch u8, weights i8 in panels
/// of [`crate::signatures::PANEL`] outputs.
pub fn dot_u8i8(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    acc: &mut [i32],
) {
    crate::signatures::check_dot_u8i8(rows, (patch, depth_bytes), w, n, acc);
    for (o0, width) in crate::signatures::panels(n) {
        let wp = &w[o0 * depth_bytes..(o0 + width) * depth_bytes];
        for r in 0..rows {
            let p = &patch[r * depth_bytes..(r + 1) * depth_bytes];
            let a = &mut acc[r * n + o0..r * n + o0 + width];
            for (q, quad) in p.chunks_exact(4).enumerate() {
                let wq = &wp[q * width * 4..(q + 1) * width * 4];
                for (o, acc) in a.iter_mut().enumerate() {
                    let wo = &wq[4 * o..4 * o + 4];
                    *acc += quad
                        .iter()
                        .zip(wo)
                        .map(|(&x, &w)| x as i32 * w as i32)
                        .sum::<i32>();
                }
            }
        }
    }
}

/// [`dot_u8i8`] into accumulators that start at zero, each then requantized into `out`
/// (rows `ldo` apart, as the residual input).
#[allow(clippy::too_many_arguments)]
pub fn dot_u8i8_requant(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    rq: &super::requant::TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
    ldo: usize,
) {
    let patch_kq = (patch, depth_bytes);
    assert!(crate::signatures::fits_requant(
        rows, patch_kq, w, n, rq, residual, out, ldo
    ));
    let mut acc = vec![0i32; n];
    for r in 0..rows {
        acc.fill(0);
        dot_u8i8(
            1,
            &patch[r * depth_bytes..(r + 1) * depth_bytes],
            depth_bytes,
            w,
            n,
            &mut acc,
        );
        for (o, &a) in acc.iter().enumerate() {
            let at = r * ldo + o;
            out[at] = rq.output(o, a, residual.map(|res| res[at]));
        }
    }
}

/// The convolution straight off a padded NHWC input (no patch), `acc[p][o] += sum over taps
/// (ky, kx) and the group's input channels c of xp[p * stride * in_c + ky * row + kx * in_c +
/// group(o) * cin + c] * w[weight_at(tap, c / 4, o) + c % 4]`; see [`crate::signatures::DirectShape`].
pub fn direct_u8(
    s: &crate::signatures::DirectShape,
    xp: &[u8],
    pixels: usize,
    w: &[i8],
    acc: &mut [i32],
) {
    assert!(s.fits(pixels, xp.len(), w.len(), acc.len()));
    let (k, quads) = (s.kernel, s.cin / 4);
    for p in 0..pixels {
        for (o, a) in acc[p * s.out_c..(p + 1) * s.out_c].iter_mut().enumerate() {
            let group = o / s.cout * s.cin;
            let mut sum = 0i32;
            for ky in 0..k {
                for kx in 0..k {
                    let at = p * s.stride * s.in_c + ky * s.row + kx * s.in_c + group;
                    let tap = ky * k + kx;
                    for q in 0..quads {
                        let wq = &w[s.weight_at(tap, q, o)..][..4];
                        for (t, &wv) in wq.iter().enumerate() {
                            sum += xp[at + 4 * q + t] as i32 * wv as i32;
                        }
                    }
                }
            }
            *a += sum;
        }
    }
}

/// [`direct_u8`] into accumulators that start at zero, each then requantized into `out`
/// (`[pixels][out_c]`, as the residual input).
pub fn direct_u8_requant(
    s: &crate::signatures::DirectShape,
    xp: &[u8],
    pixels: usize,
    w: &[i8],
    rq: &super::requant::TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
) {
    let lens = (xp.len(), w.len(), out.len(), residual.map(<[u8]>::len));
    assert!(crate::signatures::fits_direct_requant(s, pixels, lens, rq));
    let mut acc = vec![0i32; s.out_c];
    for p in 0..pixels {
        acc.fill(0);
        direct_u8(s, &xp[p * s.stride * s.in_c..], 1, w, &mut acc);
        for (o, &a) in acc.iter().enumerate() {
            let at = p * s.out_c + o;
            out[at] = rq.output(o, a, residual.map(|r| r[at]));
        }
    }
}

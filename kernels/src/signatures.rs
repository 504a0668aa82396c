//! What every kernel of a job takes and checks: the signatures of the dot and direct kernels,
//! the direct convolution's shape ([`DirectShape`]), the tile and panel sizes, and the bounds
//! checks ([`fits`] and its kin) that each public kernel asserts before its SIMD body reads
//! unchecked. The ISA modules implement these; [`crate::dispatch`] picks among them.

use crate::requant;

/// Output pixels the convolution gathers and hands to one kernel call.
pub const MAX_ROWS: usize = 32;

/// Outputs per weight panel. The weights of a dot kernel are stored panel by panel: the `n`
/// outputs in runs of `PANEL` (the last run narrower), each run's weights for the whole depth
/// together, so that a tile of outputs reads its weights in sequence. (With the outputs
/// interleaved over the whole width, a 32-output tile read 128 bytes every `4 n` bytes: in
/// layers of 1024 and 2048 channels every quad fell on the same L1 sets.)
pub const PANEL: usize = 32;

/// The panels of `n` outputs: `(first output, width)`. With a depth of `k` values (pairs or
/// quads included), panel `(o0, width)` holds `w[o0 * k..(o0 + width) * k]`.
pub fn panels(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(PANEL).map(move |o| (o, PANEL.min(n - o)))
}

/// Each output's sum of the weights `w` of a [`DotU8I8`] call (the
/// [`requant::TileRequant::weight_sums`] of a [`DotU8Requant`] one).
pub fn dot_weight_sums(depth_bytes: usize, w: &[i8], n: usize) -> Vec<i32> {
    let mut sums = vec![0; n];
    for (o0, width) in panels(n) {
        let panel = &w[o0 * depth_bytes..][..width * depth_bytes];
        for (i, quad) in panel.as_chunks::<4>().0.iter().enumerate() {
            sums[o0 + i % width] += quad.iter().map(|&v| v as i32).sum::<i32>();
        }
    }
    sums
}

/// Signature of a `dot_i16` kernel: `acc[r * n + o] += sum_j patch[r * kp + 2j..][0..2] .
/// wp[(j * width + o - o0) * 2..][0..2]` for `r < rows`, `kp` even, where `wp` is the
/// [`PANEL`] `(o0, width)` holding output `o`.
pub type DotI16 = fn(rows: usize, patch: &[i16], kp: usize, w: &[i16], n: usize, acc: &mut [i32]);

/// Signature of a `dot_u8i8` kernel: `acc[r * n + o] += sum_q patch[r * depth_bytes + 4q..][0..4] .
/// wp[(q * width + o - o0) * 4..][0..4]` for `r < rows`, `depth_bytes` a multiple of 4, `wp` the
/// [`PANEL`] `(o0, width)` holding output `o`; `patch` u8, `w` i8.
pub type DotU8I8 =
    fn(rows: usize, patch: &[u8], depth_bytes: usize, w: &[i8], n: usize, acc: &mut [i32]);

/// Signature of a dot kernel that requantizes its own results ([`requant`]), so that its
/// accumulators never leave the registers: for `r < rows` and `o < n`, `out[r * ldo + o] =
/// rq.output(o, sum_q patch[r * depth_bytes + 4q..][0..4] . w(q, o), residual[r * ldo + o])`, the
/// weights as for [`DotU8I8`] ([`generic::dot_u8i8_requant`] is the definition).
pub type DotU8Requant = fn(
    rows: usize,
    patch: &[u8],
    depth_bytes: usize,
    w: &[i8],
    n: usize,
    rq: &requant::TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
    ldo: usize,
);

/// Where a [`DirectU8`] kernel finds its operands: a convolution of `out_c` output channels in
/// groups of `cout`, each reading `cin` input channels (a multiple of 4) of pixels `in_c` bytes
/// apart, with a square `kernel` at `stride`, on an input padded with its zero point so that
/// every window lies inside it; `row` is the bytes of one padded input row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectShape {
    pub in_c: usize,
    pub out_c: usize,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub row: usize,
}

impl DirectShape {
    /// Weights a kernel reads: `kernel * kernel * cin * out_c` i8, laid out as
    /// [`Self::weight_at`] says.
    pub fn weights(&self) -> Option<usize> {
        (self.kernel * self.kernel)
            .checked_mul(self.cin)?
            .checked_mul(self.out_c)
    }

    /// Each output channel's sum of the weights `w` in this shape's layout (the
    /// [`requant::TileRequant::weight_sums`] of a call).
    pub fn weight_sums(&self, w: &[i8]) -> Vec<i32> {
        let taps = self.kernel * self.kernel;
        (0..self.out_c)
            .map(|o| {
                let quads = (0..taps).flat_map(|t| (0..self.cin / 4).map(move |q| (t, q)));
                quads
                    .flat_map(|(t, q)| &w[self.weight_at(t, q, o)..][..4])
                    .map(|&v| v as i32)
                    .sum()
            })
            .collect()
    }

    /// Where the weight of tap `tap`, input quad `q` (of the output's group), output channel
    /// `o` lies (its 4 lanes follow): the outputs in blocks of 16 (one vector; the last block
    /// narrower), each block's weights together, `[taps][cin / 4][width][4]`, so that a vector
    /// reads its weights in sequence. (With the outputs interleaved over the whole width, a
    /// vector's weights were `4 out_c` bytes apart: in layers of 512 and 1024 channels every
    /// tap's load fell on the same L1 sets.)
    #[inline(always)]
    pub fn weight_at(&self, tap: usize, q: usize, o: usize) -> usize {
        let b0 = o / 16 * 16;
        let width = 16.min(self.out_c - b0);
        b0 * self.kernel * self.kernel * self.cin
            + ((tap * (self.cin / 4) + q) * width + o - b0) * 4
    }

    /// The shapes the SIMD kernels take: a dense convolution (one group: any number of outputs,
    /// the last vector partly masked), or 16-lane vectors of output channels each either in one
    /// group (`cout` a multiple of 16: wide groups) or spanning whole groups of 4 or 8 channels in
    /// and out (ResNeXt's first stages).
    pub fn supported(&self) -> bool {
        self.cout == self.out_c
            || (self.out_c.is_multiple_of(16)
                && (self.cout.is_multiple_of(16)
                    || (self.cin == self.cout && (self.cin == 4 || self.cin == 8))))
    }

    /// Whether the shape is consistent and the buffers hold what `pixels` output pixels read
    /// and write (products checked, so that huge arguments cannot reach unchecked loads).
    pub fn fits(&self, pixels: usize, xp: usize, w: usize, acc: usize) -> bool {
        let reach = || -> Option<usize> {
            let last = pixels
                .checked_sub(1)?
                .checked_mul(self.stride)?
                .checked_mul(self.in_c)?;
            let window = (self.kernel - 1)
                .checked_mul(self.row)?
                .checked_add(self.kernel.checked_mul(self.in_c)?)?;
            last.checked_add(window)
        };
        let groups = self.out_c.checked_div(self.cout).unwrap_or(0);
        self.cin > 0
            && self.cin.is_multiple_of(4)
            && self.cout > 0
            && self.out_c.is_multiple_of(self.cout)
            && groups.checked_mul(self.cin).is_some_and(|c| c <= self.in_c)
            && self.kernel > 0
            && self.stride > 0
            && self.row >= self.kernel * self.in_c
            && (pixels == 0 || reach().is_some_and(|r| r <= xp))
            && self.weights().is_some_and(|n| n <= w)
            && pixels.checked_mul(self.out_c).is_some_and(|n| n <= acc)
    }
}

/// The pixel walk of the SIMD direct kernels: `pixels` pixels in tiles of `max` (a power of
/// two), then of the largest smaller power of two that fits, `tile(first, n)` for each in order.
/// A kernel matches `n` to its `P`-pixel tile, monomorphized for each size.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) fn pixel_tiles(pixels: usize, max: usize, mut tile: impl FnMut(usize, usize)) {
    debug_assert!(max.is_power_of_two());
    let mut p = 0;
    while p < pixels {
        let mut n = max;
        while n > pixels - p {
            n /= 2;
        }
        tile(p, n);
        p += n;
    }
}

/// Signature of a direct convolution kernel: for `pixels` output pixels along one output row,
/// whose first window starts at `xp[0]` (padded, pixels `in_c` bytes apart),
/// `acc[p * out_c + o] += sum over the window and the group's channels of x * w`
/// ([`generic::direct_u8`] is the definition). No patch is gathered: grouped convolutions have
/// too little depth per group, and the stem too few channels per tap, to pay for one.
pub type DirectU8 = fn(s: &DirectShape, xp: &[u8], pixels: usize, w: &[i8], acc: &mut [i32]);

/// Signature of a direct kernel that requantizes its own tiles: for `p < pixels` and
/// `o < out_c`, `out[p * out_c + o] = rq.output(o, the direct sum, residual[p * out_c + o])`
/// ([`generic::direct_u8_requant`] is the definition).
pub type DirectU8Requant = fn(
    s: &DirectShape,
    xp: &[u8],
    pixels: usize,
    w: &[i8],
    rq: &requant::TileRequant,
    residual: Option<&[u8]>,
    out: &mut [u8],
);

/// Whether the buffers of a [`DirectU8Requant`] call, `(xp, w, out, residual)` long, hold what
/// `pixels` pixels read and write.
pub(crate) fn fits_direct_requant(
    s: &DirectShape,
    pixels: usize,
    (xp, w, out, residual): (usize, usize, usize, Option<usize>),
    rq: &requant::TileRequant,
) -> bool {
    let outputs = pixels.checked_mul(s.out_c);
    s.fits(pixels, xp, w, usize::MAX)
        && rq.lo <= rq.hi
        && rq.bias.len() >= s.out_c
        && rq.multiplier.len() >= s.out_c
        && rq.weight_sums.is_none_or(|ws| ws.sums.len() >= s.out_c)
        && outputs.is_some_and(|n| n <= out && residual.is_none_or(|r| n <= r))
}

/// Whether a kernel's buffers hold what its arguments say: `rows * k` patch values, `k * n`
/// weights and `rows * n` accumulators (products checked, so that no overflow lets huge
/// arguments through to the SIMD twins' unchecked loads).
pub(crate) fn fits(rows: usize, k: usize, n: usize, patch: usize, w: usize, acc: usize) -> bool {
    let holds = |a: usize, b: usize, len: usize| a.checked_mul(b).is_some_and(|m| len >= m);
    holds(rows, k, patch) && holds(k, n, w) && holds(rows, n, acc)
}

/// Panics unless the arguments of a [`DotU8I8`] call are consistent (`depth_bytes` whole quads)
/// and its buffers hold what they say ([`fits`]): every public dot kernel's first check.
pub(crate) fn check_dot_u8i8(
    rows: usize,
    (patch, depth_bytes): (&[u8], usize),
    w: &[i8],
    n: usize,
    acc: &[i32],
) {
    assert!(
        depth_bytes.is_multiple_of(4),
        "depth of {depth_bytes} bytes is not whole quads"
    );
    assert!(
        fits(rows, depth_bytes, n, patch.len(), w.len(), acc.len()),
        "buffers too short for {rows} rows x {depth_bytes} bytes x {n} outputs"
    );
}

/// Whether the arguments of a [`DotU8Requant`] call are consistent (`depth_bytes` whole quads) and its
/// buffers hold what they say (as [`fits`], and `n` channels of requantization, and `rows`
/// rows of `n` outputs `ldo` apart in `out` and in the residual input if there is one).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fits_requant(
    rows: usize,
    (patch, depth_bytes): (&[u8], usize),
    w: &[i8],
    n: usize,
    rq: &requant::TileRequant,
    residual: Option<&[u8]>,
    out: &[u8],
    ldo: usize,
) -> bool {
    let rows_fit = |len: usize| {
        rows == 0
            || (rows - 1)
                .checked_mul(ldo)
                .and_then(|a| a.checked_add(n))
                .is_some_and(|end| end <= len)
    };
    depth_bytes.is_multiple_of(4)
        && fits(rows, depth_bytes, n, patch.len(), w.len(), usize::MAX)
        && ldo >= n
        && rq.lo <= rq.hi
        && rq.bias.len() >= n
        && rq.multiplier.len() >= n
        && rq.weight_sums.is_none_or(|ws| ws.sums.len() >= n)
        && rows_fit(out.len())
        && residual.is_none_or(|r| rows_fit(r.len()))
}

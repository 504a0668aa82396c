//! The integer inner loop of the native convolution, in one generic definition and per-ISA
//! twins, behind one dispatch point.
//!
//! The operation: `acc[r][o] += sum_k patch[r][k] * w[k][o]` into i32, for a block of rows
//! (output pixels), `k` running over the convolution's depth (taps x input channels of a group).
//! Two families, each with its generic definition:
//! * **i16 pairs** ([`DotI16`]): the patch holds `x - zero_point` as i16, weights are packed as
//!   `[k / 2][n][2]` i16 per [`PANEL`] of outputs, one pair of inputs times a pair of weights
//!   per lane. Only the generic kernel (`RESNEXT_EDGE_KERNELS=generic-i16`) is of this family: a
//!   second, independent definition of the convolution.
//! * **u8 quads** ([`DotU8I8`]): the patch holds `x` as is (u8), weights `[k / 4][n][4]` i8 per
//!   panel, one quad per `vpdpbusd` lane (x86 VNNI; two `vpmaddwd` on AVX2, `smull`/`sdot` on
//!   ARM); the zero point's share, `zero_point * sum_k w[k][o]`, is taken out of the bias at
//!   load. Every SIMD kernel set is of this family.
//!
//! Integer accumulation is exact in any order, so every twin must equal its family's generic
//! kernel bit for bit, and both families give the same convolution; the property tests check
//! both on random shapes.
//!
//! `RESNEXT_EDGE_KERNELS=generic-i16` forces the generic path (any other kernel set's name forces
//! that one, for comparisons).
//!
//! Around the kernels, the crate holds the convolution engine that feeds them ([`conv`]:
//! geometry, weight packing, patches, requantization, the thread split), 64-byte aligned
//! buffers ([`aligned`]) and the worker threads ([`workers`]). It depends on no inference
//! engine: resnext-edge wraps it in tract ops, and its tests build and run alone on any target,
//! under qemu-user for ARM (`targets/kernel-tests.sh`).

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod aligned;
#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "arm")]
pub mod armv7;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx2_direct;
pub mod conv;
pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon_direct;
#[cfg(target_arch = "aarch64")]
pub mod neon_dot;
#[cfg(target_arch = "aarch64")]
pub mod neon_dot_direct;
#[cfg(target_arch = "aarch64")]
mod neon_sink;
pub mod nhwc;
pub mod requant;
#[cfg(target_arch = "x86_64")]
pub mod vnni_direct;
#[cfg_attr(
    not(any(target_arch = "aarch64", target_arch = "arm")),
    allow(dead_code)
)]
mod weight_split;
pub mod workers;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use std::sync::OnceLock;

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
        && outputs.is_some_and(|n| n <= out && residual.is_none_or(|r| n <= r))
}

/// Which data layout a kernel wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    I16Pairs,
    U8Quads,
}

/// A kernel of either family.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    I16(DotI16),
    U8(DotU8I8),
}

impl Kernel {
    pub fn family(self) -> Family {
        match self {
            Kernel::I16(_) => Family::I16Pairs,
            Kernel::U8(_) => Family::U8Quads,
        }
    }
}

/// A kernel and the name of its function, which `info` reports.
#[derive(Clone, Copy, Debug)]
pub struct Named<F> {
    pub name: &'static str,
    pub f: F,
}

/// `Named` for the function `module::name`.
macro_rules! named {
    ($module:ident :: $f:ident) => {
        Named {
            name: stringify!($f),
            f: $module::$f,
        }
    };
    ($module:ident :: $f:ident as $wrap:path) => {
        Named {
            name: stringify!($f),
            f: $wrap($module::$f),
        }
    };
}

/// How accumulators that reached memory are requantized: the same f32 operations everywhere
/// ([`requant`] defines them), on vectors of the width the kernel set's CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequantRows {
    /// Plain Rust, vectorized by the compiler for the target's baseline.
    Generic,
    /// The same code compiled for AVX2 (8 lanes, 32-bit min/max).
    Avx2,
    /// The same code compiled for AVX-512 F/BW (16 lanes).
    Avx512,
    /// armv7 NEON ([`armv7::requantize_rows`]; the baseline there has no vector unit).
    Armv7Neon,
}

impl RequantRows {
    pub fn name(self) -> &'static str {
        match self {
            RequantRows::Generic => "requantize",
            RequantRows::Avx2 => "requantize_avx2",
            RequantRows::Avx512 => "requantize_avx512",
            RequantRows::Armv7Neon => "requantize_rows_armv7",
        }
    }
}

/// Every kernel of one kernel set, by job: the one dispatch table ([`Isa::kernels`] fills it).
/// A job the set has no kernel for takes the path the field names.
#[derive(Clone, Copy, Debug)]
pub struct KernelSet {
    pub isa: Isa,
    /// The dot kernel: accumulators to memory, requantized by `requant_rows` afterwards.
    pub dot: Named<Kernel>,
    /// The dot kernel that requantizes its own tiles (dense convolutions); without it, `dot`
    /// and `requant_rows`.
    pub dot_requant: Option<Named<DotU8Requant>>,
    /// Whether `dot_requant` takes only whole [`PANEL`]s of outputs (else `dot` runs).
    pub dot_requant_whole_panels: bool,
    /// The direct kernel (windows read in place: grouped convolutions); without it, patches
    /// are gathered for `dot`.
    pub direct: Option<Named<DirectU8>>,
    /// The direct kernel that requantizes its own tiles; without it, `direct` and
    /// `requant_rows`.
    pub direct_requant: Option<Named<DirectU8Requant>>,
    /// The requantization of accumulators in memory.
    pub requant_rows: RequantRows,
}

impl KernelSet {
    /// The requantizing dot kernel for `n` outputs, if the set has one that takes them.
    pub fn dot_requant_for(&self, n: usize) -> Option<Named<DotU8Requant>> {
        self.dot_requant
            .filter(|_| !self.dot_requant_whole_panels || n.is_multiple_of(PANEL))
    }
}

/// The instruction sets a kernel can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, i16 pairs: the definition of the i16-pair family (only when asked for; the
    /// set of a target without SIMD kernels).
    GenericI16,
    /// Plain Rust, u8 quads: the definition every SIMD twin is tested against, bit for bit.
    GenericU8,
    /// x86_64 AVX2 (two `vpmaddwd` per quad, on its even and its odd bytes), u8 quads.
    Avx2,
    /// x86_64 VNNI on 256-bit vectors (`vpdpbusd`: AVX-VNNI, or AVX-512 VNNI's VL forms) for
    /// the dot kernel, the AVX2 set's direct and requantizing kernels: the set of CPUs with
    /// AVX-VNNI and no AVX-512 (Alder Lake and later desktop Intel, ...), u8 quads.
    AvxVnni,
    /// x86_64 AVX-512 VNNI (512-bit tiles), u8 quads.
    Vnni,
    /// x86_64 AMX-INT8 (`tdpbusd`) for the pointwise convolutions, AVX-512 VNNI elsewhere.
    Amx,
    /// aarch64 NEON 8-bit multiplies (`smull` + `sadalp`), u8 quads.
    NeonI8,
    /// aarch64 dot product (`sdot`, Armv8.2 `dotprod`), u8 quads.
    NeonDot,
    /// armv7 NEON 8-bit multiplies (`vmull.s8` + `vpadal`), u8 quads.
    Armv7Neon,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::GenericI16 => "generic-i16",
            Isa::GenericU8 => "generic-u8",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avx-vnni",
            Isa::Vnni => "vnni",
            Isa::Amx => "amx",
            Isa::NeonI8 => "neon-i8",
            Isa::NeonDot => "neon-dot",
            Isa::Armv7Neon => "armv7-neon",
        }
    }

    /// Every ISA this CPU can run, generic first and the best last.
    pub fn available() -> Vec<Isa> {
        #[cfg_attr(
            not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")),
            allow(unused_mut)
        )]
        let mut v = vec![Isa::GenericI16, Isa::GenericU8];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                v.push(Isa::Avx2);
                if x86_64::has_vnni() {
                    v.push(Isa::AvxVnni);
                }
            }
            if x86_64::has_vnni_512() {
                v.push(Isa::Vnni);
            }
            if amx::available() {
                v.push(Isa::Amx);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            v.push(Isa::NeonI8);
            if neon_dot::available() {
                v.push(Isa::NeonDot);
            }
        }
        #[cfg(target_arch = "arm")]
        if armv7::available() {
            v.push(Isa::Armv7Neon);
        }
        v
    }

    /// The family of this ISA's kernels (the layout its weights are packed in).
    pub fn family(self) -> Family {
        self.kernels().dot.f.family()
    }

    /// The dispatch table: every kernel of this ISA's set. Each kernel checks the CPU features
    /// it needs and falls back to its generic definition without them.
    pub fn kernels(self) -> KernelSet {
        let none = KernelSet {
            isa: self,
            dot: named!(generic::dot_u8i8 as Kernel::U8),
            dot_requant: None,
            dot_requant_whole_panels: false,
            direct: None,
            direct_requant: None,
            requant_rows: RequantRows::Generic,
        };
        match self {
            Isa::GenericI16 => KernelSet {
                dot: named!(generic::dot_i16 as Kernel::I16),
                ..none
            },
            Isa::GenericU8 => KernelSet {
                direct: Some(named!(generic::direct_u8)),
                ..none
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => KernelSet {
                dot: named!(avx2::dot_u8i8_avx2 as Kernel::U8),
                ..Isa::avx2_direct_and_requant(self)
            },
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => KernelSet {
                dot: named!(x86_64::dot_u8i8_vnni256 as Kernel::U8),
                ..Isa::avx2_direct_and_requant(self)
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Vnni => KernelSet {
                dot: named!(x86_64::dot_u8i8_vnni512 as Kernel::U8),
                dot_requant: Some(named!(x86_64::dot_u8i8_requant_vnni)),
                dot_requant_whole_panels: true,
                direct: Some(named!(vnni_direct::direct_u8_vnni)),
                direct_requant: Some(named!(vnni_direct::direct_u8_requant_vnni)),
                requant_rows: RequantRows::Avx512,
                ..none
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => KernelSet {
                isa: self,
                dot_requant: Some(named!(amx::dot_u8i8_requant_amx)),
                ..Isa::Vnni.kernels()
            },
            #[cfg(target_arch = "aarch64")]
            Isa::NeonI8 => KernelSet {
                dot: named!(aarch64::dot_u8i8_neon as Kernel::U8),
                dot_requant: Some(named!(aarch64::dot_u8i8_requant_neon)),
                direct: Some(named!(neon_direct::direct_u8_neon)),
                direct_requant: Some(named!(neon_direct::direct_u8_requant_neon)),
                ..none
            },
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDot => KernelSet {
                dot: named!(neon_dot::dot_u8i8_sdot as Kernel::U8),
                dot_requant: Some(named!(neon_dot::dot_u8i8_requant_sdot)),
                direct: Some(named!(neon_dot_direct::direct_u8_sdot)),
                direct_requant: Some(named!(neon_dot_direct::direct_u8_requant_sdot)),
                ..none
            },
            #[cfg(target_arch = "arm")]
            Isa::Armv7Neon => KernelSet {
                dot: named!(armv7::dot_u8i8_armv7 as Kernel::U8),
                direct: Some(named!(armv7::direct_u8_armv7)),
                requant_rows: RequantRows::Armv7Neon,
                ..none
            },
            // Another architecture's set: never available here (the generic kernels).
            #[allow(unreachable_patterns)]
            _ => none,
        }
    }

    /// The direct and requantizing kernels of the AVX2 set, which the AVX-VNNI set shares
    /// (AVX-VNNI has no 512-bit vectors for the VNNI ones).
    #[cfg(target_arch = "x86_64")]
    fn avx2_direct_and_requant(self) -> KernelSet {
        KernelSet {
            isa: self,
            dot: named!(avx2::dot_u8i8_avx2 as Kernel::U8),
            dot_requant: Some(named!(avx2::dot_u8i8_requant_avx2)),
            dot_requant_whole_panels: true,
            direct: Some(named!(avx2_direct::direct_u8_avx2)),
            direct_requant: Some(named!(avx2_direct::direct_u8_requant_avx2)),
            requant_rows: RequantRows::Avx2,
        }
    }
}

/// Whether a kernel's buffers hold what its arguments say: `rows * k` patch values, `k * n`
/// weights and `rows * n` accumulators (products checked, so that no overflow lets huge
/// arguments through to the SIMD twins' unchecked loads).
pub(crate) fn fits(rows: usize, k: usize, n: usize, patch: usize, w: usize, acc: usize) -> bool {
    let holds = |a: usize, b: usize, len: usize| a.checked_mul(b).is_some_and(|m| len >= m);
    holds(rows, k, patch) && holds(k, n, w) && holds(rows, n, acc)
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
        && rows_fit(out.len())
        && residual.is_none_or(|r| rows_fit(r.len()))
}

static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Threads a layer's work is split across: what [`set_threads`] said, else every core.
pub fn threads() -> usize {
    match THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Sets the thread count of [`threads`] (0: every core).
pub fn set_threads(n: usize) {
    THREADS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// The kernel set this process uses: the best the CPU has, unless `RESNEXT_EDGE_KERNELS` names
/// another it has (`generic-i16`, `generic-u8`, `avx2`, `avx-vnni`, `vnni`, `amx`, `neon-i8`,
/// `neon-dot`, `armv7-neon`).
pub fn selected() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let available = Isa::available();
        let best = *available
            .iter()
            .rfind(|i| **i != Isa::GenericU8)
            .expect("generic is always available");
        let isa = match std::env::var("RESNEXT_EDGE_KERNELS").ok() {
            None => best,
            Some(name) => match available.iter().find(|i| i.name() == name) {
                Some(isa) => *isa,
                None => {
                    let names: Vec<_> = available.iter().map(|i| i.name()).collect();
                    log::warn!(
                        "RESNEXT_EDGE_KERNELS={name}: not one of this CPU's kernel sets ({}); using {}",
                        names.join(", "),
                        best.name()
                    );
                    best
                }
            },
        };
        log::debug!("int8 kernels: {}", isa.name());
        isa
    })
}

#[cfg(test)]
mod tests {
    //! Every kernel twin against its family's generic kernel, bit for bit, with guard values
    //! around the accumulators so that a write outside the tile shows up.
    use super::*;
    use proptest::prelude::*;

    /// An input byte: random, except every eighth case (by seed) half of them 0, the input
    /// whose `x - 128` times a -128 weight is the largest product, 16384 (with
    /// [`clash_weight`]: two such products in one i16 lane overflow it).
    fn clash_input(seed: u64, r: u64) -> u8 {
        if seed % 8 == 4 && r.is_multiple_of(2) {
            0
        } else {
            (r >> 1) as u8
        }
    }

    /// A weight: random, except every eighth case (the same as [`clash_input`]'s) half of them
    /// -128 (unless the test then raises its floor).
    fn clash_weight(seed: u64, r: u64) -> i8 {
        if seed % 8 == 4 && r.is_multiple_of(2) {
            i8::MIN
        } else {
            (r >> 1) as i8
        }
    }

    /// A reproducible stream of pseudo-random words from a proptest seed.
    pub(super) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// The dispatch table: every SIMD set has direct kernels and kernels that requantize their
    /// own tiles (armv7's requantize in a pass of their own), of its own ISA; the AVX-VNNI set
    /// takes the AVX2 set's, as it has no 512-bit vectors.
    #[test]
    fn every_simd_set_has_direct_and_requantizing_kernels_of_its_isa() {
        for isa in Isa::available() {
            let set = isa.kernels();
            assert_eq!(set.isa, isa);
            let suffix = match isa {
                Isa::GenericI16 | Isa::GenericU8 | Isa::Armv7Neon => continue,
                Isa::Avx2 | Isa::AvxVnni => "_avx2",
                Isa::Vnni | Isa::Amx => "_vnni",
                Isa::NeonI8 => "_neon",
                Isa::NeonDot => "_sdot",
            };
            let (direct, direct_requant, dot_requant) = (
                set.direct.expect("direct"),
                set.direct_requant.expect("direct_requant"),
                set.dot_requant.expect("dot_requant"),
            );
            assert!(
                direct.name.ends_with(suffix),
                "{}: {}",
                isa.name(),
                direct.name
            );
            assert!(
                direct_requant.name.ends_with(suffix),
                "{}",
                direct_requant.name
            );
            let amx = isa == Isa::Amx && dot_requant.name.ends_with("_amx");
            assert!(
                dot_requant.name.ends_with(suffix) || amx,
                "{}",
                dot_requant.name
            );
        }
    }

    /// The corners of the input ranges, where pairing products in 16 bits could overflow:
    /// `x = 0` (`x - 128 = -128`) against `w = -128` is 16384 per product.
    #[test]
    fn extreme_values_equal_the_generic_kernel() {
        // depth_bytes = 12: three quads, so the odd last one is taken alone.
        for (rows, depth_bytes, n, x, wv) in [0u8, 255].into_iter().flat_map(|x| {
            [-128i8, -127, 127]
                .into_iter()
                .flat_map(move |wv| [(5, 16, 12, x, wv), (5, 12, 12, x, wv)])
        }) {
            {
                let patch = vec![x; rows * depth_bytes];
                let w = vec![wv; depth_bytes * n];
                let mut want = vec![0; rows * n];
                generic::dot_u8i8(rows, &patch, depth_bytes, &w, n, &mut want);
                for isa in Isa::available() {
                    if let Kernel::U8(dot) = isa.kernels().dot.f {
                        let mut got = vec![0; rows * n];
                        dot(rows, &patch, depth_bytes, &w, n, &mut got);
                        assert_eq!(got, want, "{} with x = {x}, w = {wv}", isa.name());
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn u8_twins_equal_the_generic_kernel(
            rows in 1usize..=13,
            quads in 1usize..=200,
            n in 1usize..=72, // up to two weight panels and a narrower third
            seed in any::<u64>(),
        ) {
            let depth_bytes = 4 * quads;
            let mut next = xorshift(seed);
            let patch: Vec<u8> = (0..rows * depth_bytes).map(|_| clash_input(seed, next())).collect();
            // Weights as the quantizer writes them, [-127, 127]; every fourth case the full
            // i8 range (ONNX allows -128; kernels that pair products must notice).
            let floor = if seed % 4 == 0 { -128 } else { -127 };
            let w: Vec<i8> = (0..depth_bytes * n).map(|_| clash_weight(seed, next()).max(floor)).collect();
            let guard = 3;
            let start: Vec<i32> = (0..rows * n + 2 * guard).map(|_| next() as i32 >> 8).collect();
            let mut want = start.clone();
            generic::dot_u8i8(rows, &patch, depth_bytes, &w, n, &mut want[guard..guard + rows * n]);
            for isa in Isa::available() {
                if let Kernel::U8(dot) = isa.kernels().dot.f {
                    let mut got = start.clone();
                    dot(rows, &patch, depth_bytes, &w, n, &mut got[guard..guard + rows * n]);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }

        #[test]
        fn requantizing_twins_equal_the_generic_kernel(
            rows in 1usize..=13,
            quads in 1usize..=160,
            panels in 1usize..=3,
            // Outputs short of whole panels (kernels that take them: vectors and a tail).
            short in prop::sample::select(vec![0usize, 0, 0, 4, 13]),
            gap in 0usize..=5,
            residual in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let (depth_bytes, n) = (4 * quads, PANEL * panels - short);
            let ldo = n + gap;
            let mut next = xorshift(seed);
            let patch: Vec<u8> = (0..rows * depth_bytes).map(|_| clash_input(seed, next())).collect();
            let floor = if seed % 4 == 0 { -128 } else { -127 };
            let w: Vec<i8> = (0..depth_bytes * n).map(|_| clash_weight(seed, next()).max(floor)).collect();
            let bias: Vec<i32> = (0..n).map(|_| next() as i32 >> 12).collect();
            // Scales as a quantizer makes them, some large enough to saturate, and (rarely)
            // the values no quantizer writes: NaN, infinities, zero.
            let multiplier: Vec<f32> = (0..n)
                .map(|_| match next() % 64 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => 0.0,
                    k => (k as f32 - 32.0) * 1e-5 * (1 + next() % 1000) as f32,
                })
                .collect();
            // Zero points and bounds are bytes in a model; every eighth case far outside
            // them (the kernels' general path).
            let wide = |v: u64| if seed % 8 == 0 { (v % (1 << 21)) as i32 - (1 << 20) } else { v as u8 as i32 };
            let (a, b) = (wide(next()), wide(next()));
            // And every eighth a zero point far outside with byte bounds (a kernel that
            // narrows with saturation before the zero point must not take it).
            let zero = if seed % 8 == 1 { (next() % (1 << 21)) as i32 - (1 << 20) } else { wide(next()) };
            let rq = requant::TileRequant {
                bias: &bias,
                multiplier: &multiplier,
                zero,
                lo: a.min(b),
                hi: a.max(b),
                residual: residual.then(|| (next() as u8 as i32, (next() % 1000) as f32 * 1e-3)),
            };
            let len = (rows - 1) * ldo + n;
            let res: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Now and then the call's residual inputs and the requantization's residual
            // disagree (the definition adds the term only when both are there).
            let res = (residual != (seed % 16 == 5)).then_some(&res[..]);
            // Canary bytes in the gaps between rows and after the last one.
            let canary = 0xA5u8;
            let mut want = vec![canary; len + 3];
            generic::dot_u8i8_requant(rows, &patch, depth_bytes, &w, n, &rq, res, &mut want[..len], ldo);
            for isa in Isa::available() {
                if let Some(fused) = isa.kernels().dot_requant_for(n).map(|k| k.f) {
                    let mut got = vec![canary; len + 3];
                    fused(rows, &patch, depth_bytes, &w, n, &rq, res, &mut got[..len], ldo);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }

        #[test]
        fn requantizing_direct_twins_equal_the_generic_kernel(
            (cin, cout) in prop::sample::select(vec![
                (4usize, 4usize), (8, 8), (16, 16), (32, 32), (4, 16), (12, 16),
            ]),
            vectors in 1usize..=3,
            dense in prop::sample::select(vec![0usize, 0, 8, 20, 24, 64]),
            kernel in 1usize..=3,
            stride in 1usize..=2,
            pixels in 1usize..=19,
            residual in any::<bool>(),
            // Input pixels with channels no group reads, rows longer than the windows need.
            (extra_channels, extra_row) in (0usize..=2, 0usize..=3),
            seed in any::<u64>(),
        ) {
            let (cout, out_c) = match dense {
                0 => (cout, (16 * vectors).div_ceil(cout) * cout),
                n => (n, n),
            };
            let in_c = out_c / cout * cin + extra_channels;
            let row = (stride * (pixels - 1) + kernel + extra_row) * in_c;
            let s = DirectShape { in_c, out_c, cin, cout, kernel, stride, row };
            let mut next = xorshift(seed);
            let xp: Vec<u8> = (0..kernel * row).map(|_| clash_input(seed, next())).collect();
            let w: Vec<i8> = (0..s.weights().unwrap()).map(|_| clash_weight(seed, next())).collect();
            let bias: Vec<i32> = (0..out_c).map(|_| next() as i32 >> 12).collect();
            let multiplier: Vec<f32> = (0..out_c)
                .map(|_| match next() % 64 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    k => (k as f32 - 32.0) * 1e-5 * (1 + next() % 1000) as f32,
                })
                .collect();
            let (a, b) = (next() as u8 as i32, next() as u8 as i32);
            let rq = requant::TileRequant {
                bias: &bias,
                multiplier: &multiplier,
                zero: next() as u8 as i32,
                lo: a.min(b),
                hi: a.max(b),
                residual: residual.then(|| (next() as u8 as i32, (next() % 1000) as f32 * 1e-3)),
            };
            let len = pixels * out_c;
            let res: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let res = (residual != (seed % 16 == 5)).then_some(&res[..]);
            let canary = 0x5Au8;
            let mut want = vec![canary; len + 3];
            generic::direct_u8_requant(&s, &xp, pixels, &w, &rq, res, &mut want[..len]);
            for isa in Isa::available() {
                if let Some(fused) = isa.kernels().direct_requant.map(|k| k.f) {
                    let mut got = vec![canary; len + 3];
                    fused(&s, &xp, pixels, &w, &rq, res, &mut got[..len]);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }

        #[test]
        fn direct_twins_equal_the_generic_kernel(
            (cin, cout) in prop::sample::select(vec![
                (4usize, 4usize), (8, 8), (12, 12), (16, 16), (32, 32), (4, 16), (4, 64), (8, 32),
                (12, 16), (4, 8),
            ]),
            vectors in 1usize..=4,
            // Non-zero: a dense convolution of that many outputs (the last vector masked).
            dense in prop::sample::select(vec![0usize, 0, 0, 4, 8, 20, 24, 40, 64]),
            kernel in 1usize..=3,
            stride in 1usize..=2,
            pixels in 1usize..=19,
            extra_channels in 0usize..=2,
            extra_row in 0usize..=5,
            seed in any::<u64>(),
        ) {
            // Output channels: whole 16-lane vectors and whole groups, or one group; input pixels
            // may carry more channels than the groups read.
            let (cout, out_c) = match dense {
                0 => (cout, (16 * vectors).div_ceil(cout) * cout),
                n => (n, n),
            };
            let in_c = out_c / cout * cin + extra_channels;
            let row = (stride * (pixels - 1) + kernel + extra_row) * in_c;
            let s = DirectShape { in_c, out_c, cin, cout, kernel, stride, row };
            let mut next = xorshift(seed);
            let xp: Vec<u8> = (0..kernel * row).map(|_| clash_input(seed, next())).collect();
            let floor = if seed % 4 == 0 { -128 } else { -127 };
            let w: Vec<i8> =
                (0..s.weights().unwrap()).map(|_| clash_weight(seed, next()).max(floor)).collect();
            let guard = 3;
            let start: Vec<i32> =
                (0..pixels * out_c + 2 * guard).map(|_| next() as i32 >> 8).collect();
            let mut want = start.clone();
            generic::direct_u8(&s, &xp, pixels, &w, &mut want[guard..guard + pixels * out_c]);
            for isa in Isa::available() {
                if let Some(direct) = isa.kernels().direct.map(|k| k.f) {
                    let mut got = start.clone();
                    direct(&s, &xp, pixels, &w, &mut got[guard..guard + pixels * out_c]);
                    prop_assert_eq!(&got, &want, "{}", isa.name());
                }
            }
        }
    }

    #[test]
    fn pixel_tiles_cover_each_pixel_once_largest_first() {
        for max in [1, 2, 4, 8] {
            for pixels in 0..40 {
                let mut seen = Vec::new();
                super::pixel_tiles(pixels, max, |p, n| seen.push((p, n)));
                let mut next = 0;
                for &(p, n) in &seen {
                    assert_eq!(p, next, "max {max}, pixels {pixels}: {seen:?}");
                    assert!(n.is_power_of_two() && n <= max);
                    // The largest tile that fits: twice it would not.
                    assert!(n == max || 2 * n > pixels - p, "{seen:?}");
                    next += n;
                }
                assert_eq!(next, pixels);
            }
        }
    }
}

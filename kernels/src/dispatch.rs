//! The one dispatch table: the kernel sets ([`Isa`]), every kernel of a set by job
//! ([`KernelSet`], filled by [`Isa::kernels`]), the set this process uses ([`selected`]:
//! the best the CPU has, or the one `RESNEXT_EDGE_KERNELS` names) and the thread count.

#[cfg(target_arch = "arm")]
use crate::armv7;
use crate::generic;
use crate::signatures::{DirectU8, DirectU8Requant, DotI16, DotU8I8, DotU8Requant, PANEL};
#[cfg(target_arch = "aarch64")]
use crate::{aarch64, neon_direct, neon_dot, neon_dot_direct};
#[cfg(target_arch = "x86_64")]
use crate::{amx, avx2, avx2_direct, vnni_direct, x86_64};
use std::sync::OnceLock;

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

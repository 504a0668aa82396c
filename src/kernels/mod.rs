//! The integer inner loop of the native convolution, in one generic definition and per-ISA
//! twins, behind one dispatch point.
//!
//! The operation: `acc[r][o] += sum_k patch[r][k] * w[k][o]` over i16 inputs into i32, for a
//! block of rows (output pixels), `k` running over the convolution's depth (taps x
//! input channels of a group) in pairs. Weights are packed once at load as `[k / 2][n][2]` i16,
//! so that one pair of inputs times a pair of weights is one `pmaddwd` lane (x86) or two
//! `smlal` lanes (ARM). Integer accumulation is exact in any order, so every twin must equal
//! [`generic::dot_i16`] bit for bit; the property tests check it on random shapes.
//!
//! `RESNEXT_EDGE_KERNELS=generic` forces the generic path.

pub mod generic;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use std::sync::OnceLock;

/// Output pixels the convolution gathers and hands to one kernel call.
pub const MAX_ROWS: usize = 32;

/// Signature of a `dot_i16` kernel: `acc[r * n + o] += sum_j patch[r * kp + 2j..][0..2] . w[(j * n + o) * 2..][0..2]`
/// for `r < rows`, `kp` even.
pub type DotI16 = fn(rows: usize, patch: &[i16], kp: usize, w: &[i16], n: usize, acc: &mut [i32]);

/// The instruction sets a kernel can be built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Generic,
    /// x86_64 AVX2 (`vpmaddwd`).
    Avx2,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2",
        }
    }

    /// Every ISA this CPU can run, generic first.
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Generic];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push(Isa::Avx2);
        }
        v
    }

    /// The `dot_i16` kernel of this ISA.
    pub fn dot_i16(self) -> DotI16 {
        match self {
            Isa::Generic => generic::dot_i16,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86_64::dot_i16_avx2,
            #[allow(unreachable_patterns)]
            _ => generic::dot_i16,
        }
    }
}

/// The kernel set this process uses: the best the CPU has, unless `RESNEXT_EDGE_KERNELS=generic`.
pub fn selected() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let forced = std::env::var("RESNEXT_EDGE_KERNELS").ok();
        let isa = if forced.as_deref() == Some("generic") {
            Isa::Generic
        } else {
            *Isa::available()
                .last()
                .expect("generic is always available")
        };
        log::debug!("int8 kernels: {}", isa.name());
        isa
    })
}

#[cfg(test)]
mod tests {
    //! Every `dot_i16` twin against the generic one, bit for bit, with guard values around the
    //! accumulators so that a write outside the tile shows up.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn twins_equal_the_generic_kernel(
            rows in 1usize..=13,
            pairs in 1usize..=300,
            n in 1usize..=40,
            seed in any::<u64>(),
        ) {
            let kp = 2 * pairs;
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            // Inputs as the convolution makes them: u8 minus a zero point, and int8 weights.
            let patch: Vec<i16> = (0..rows * kp).map(|_| (next() % 511) as i16 - 255).collect();
            let w: Vec<i16> = (0..kp * n).map(|_| (next() % 255) as i16 - 127).collect();
            let guard = 3;
            let start: Vec<i32> = (0..rows * n + 2 * guard).map(|_| next() as i32 >> 8).collect();
            let mut want = start.clone();
            generic::dot_i16(rows, &patch, kp, &w, n, &mut want[guard..guard + rows * n]);
            for isa in Isa::available() {
                let mut got = start.clone();
                (isa.dot_i16())(rows, &patch, kp, &w, n, &mut got[guard..guard + rows * n]);
                prop_assert_eq!(&got, &want, "{}", isa.name());
            }
        }
    }
}

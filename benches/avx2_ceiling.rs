//! What an AVX2 core without VNNI can do for an int8 convolution at best: loops of nothing but
//! the instructions of an inner loop, timed against a chain of dependent scalar additions (one
//! cycle each) run just before and after, so that the figures are per cycle whatever the clock.
//!
//! * the exact step of the AVX2 kernels ([`resnext_edge::kernels`]): `vpmaddwd` on i16 pairs
//!   (16 multiply-adds) and `vpaddd` into an accumulator;
//! * onnxruntime's step: `vpmaddubsw` on u8 x i8 (32 multiply-adds, pairs saturated at i16:
//!   not exact), `vpmaddwd` by ones, `vpaddd`.
//!
//! The two differ by one vector instruction per 32 multiply-adds, which is all the difference
//! where a core runs about three vector instructions per cycle (AMD Zen 3).
//!
//! `cargo bench --bench avx2_ceiling`

#[cfg(target_arch = "x86_64")]
mod loops {
    use std::arch::asm;
    use std::time::Instant;

    const ITERS: u64 = 20_000_000;

    /// Seconds per cycle: four dependent 64-bit additions per iteration.
    pub fn cycle() -> f64 {
        let t = Instant::now();
        let mut n = ITERS;
        // SAFETY: scalar register arithmetic only.
        unsafe {
            asm!(
                "2:",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "sub {n}, 1",
                "jnz 2b",
                n = inout(reg) n,
                x = inout(reg) 0u64 => _,
            );
        }
        let _ = n;
        t.elapsed().as_secs_f64() / (4 * ITERS) as f64
    }

    /// Seconds per instruction of a loop body of `per` independent vector instructions.
    macro_rules! timed {
        ($per:expr, $($body:tt)*) => {{
            let t = Instant::now();
            let mut n = ITERS;
            // SAFETY: AVX2 is present (checked by the caller); register arithmetic only, on
            // registers declared clobbered.
            unsafe {
                asm!(
                    "vpxor xmm14, xmm14, xmm14",
                    "vpxor xmm15, xmm15, xmm15",
                    "2:",
                    $($body)*
                    "sub {n}, 1",
                    "jnz 2b",
                    n = inout(reg) n,
                    out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                    out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                    out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                    out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                );
            }
            let _ = n;
            t.elapsed().as_secs_f64() / (ITERS * $per) as f64
        }};
    }

    /// `vpmaddwd` alone, 12 independent per iteration.
    pub fn madd() -> f64 {
        timed!(
            12,
            "vpmaddwd ymm0, ymm14, ymm15",
            "vpmaddwd ymm1, ymm14, ymm15",
            "vpmaddwd ymm2, ymm14, ymm15",
            "vpmaddwd ymm3, ymm14, ymm15",
            "vpmaddwd ymm4, ymm14, ymm15",
            "vpmaddwd ymm5, ymm14, ymm15",
            "vpmaddwd ymm6, ymm14, ymm15",
            "vpmaddwd ymm7, ymm14, ymm15",
            "vpmaddwd ymm8, ymm14, ymm15",
            "vpmaddwd ymm9, ymm14, ymm15",
            "vpmaddwd ymm10, ymm14, ymm15",
            "vpmaddwd ymm11, ymm14, ymm15",
        )
    }

    /// `vpaddd` alone, 12 independent per iteration.
    pub fn add() -> f64 {
        timed!(
            12,
            "vpaddd ymm0, ymm14, ymm15",
            "vpaddd ymm1, ymm14, ymm15",
            "vpaddd ymm2, ymm14, ymm15",
            "vpaddd ymm3, ymm14, ymm15",
            "vpaddd ymm4, ymm14, ymm15",
            "vpaddd ymm5, ymm14, ymm15",
            "vpaddd ymm6, ymm14, ymm15",
            "vpaddd ymm7, ymm14, ymm15",
            "vpaddd ymm8, ymm14, ymm15",
            "vpaddd ymm9, ymm14, ymm15",
            "vpaddd ymm10, ymm14, ymm15",
            "vpaddd ymm11, ymm14, ymm15",
        )
    }

    /// The exact step: 8 accumulators, each `+= vpmaddwd` (16 instructions per iteration).
    pub fn exact_step() -> f64 {
        timed!(
            16,
            "vpmaddwd ymm8, ymm14, ymm15",
            "vpaddd ymm0, ymm0, ymm8",
            "vpmaddwd ymm9, ymm14, ymm15",
            "vpaddd ymm1, ymm1, ymm9",
            "vpmaddwd ymm10, ymm14, ymm15",
            "vpaddd ymm2, ymm2, ymm10",
            "vpmaddwd ymm11, ymm14, ymm15",
            "vpaddd ymm3, ymm3, ymm11",
            "vpmaddwd ymm12, ymm14, ymm15",
            "vpaddd ymm4, ymm4, ymm12",
            "vpmaddwd ymm13, ymm14, ymm15",
            "vpaddd ymm5, ymm5, ymm13",
            "vpmaddwd ymm8, ymm14, ymm15",
            "vpaddd ymm6, ymm6, ymm8",
            "vpmaddwd ymm9, ymm14, ymm15",
            "vpaddd ymm7, ymm7, ymm9",
        )
    }

    /// onnxruntime's step: 6 accumulators, each `+= vpmaddwd(vpmaddubsw, ones)` (18
    /// instructions per iteration; ymm13 stands for the ones).
    pub fn saturating_step() -> f64 {
        timed!(
            18,
            "vpmaddubsw ymm6, ymm14, ymm15",
            "vpmaddwd ymm6, ymm6, ymm13",
            "vpaddd ymm0, ymm0, ymm6",
            "vpmaddubsw ymm7, ymm14, ymm15",
            "vpmaddwd ymm7, ymm7, ymm13",
            "vpaddd ymm1, ymm1, ymm7",
            "vpmaddubsw ymm8, ymm14, ymm15",
            "vpmaddwd ymm8, ymm8, ymm13",
            "vpaddd ymm2, ymm2, ymm8",
            "vpmaddubsw ymm9, ymm14, ymm15",
            "vpmaddwd ymm9, ymm9, ymm13",
            "vpaddd ymm3, ymm3, ymm9",
            "vpmaddubsw ymm10, ymm14, ymm15",
            "vpmaddwd ymm10, ymm10, ymm13",
            "vpaddd ymm4, ymm4, ymm10",
            "vpmaddubsw ymm11, ymm14, ymm15",
            "vpmaddwd ymm11, ymm11, ymm13",
            "vpaddd ymm5, ymm5, ymm11",
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !std::arch::is_x86_feature_detected!("avx2") {
        println!("this CPU has no AVX2: nothing to measure");
        return;
    }
    println!("per cycle, median of 9 rounds (each timed between two clock calibrations):");
    let mut rounds: [Vec<f64>; 4] = Default::default();
    for _ in 0..9 {
        let before = loops::cycle();
        let t = [
            loops::madd(),
            loops::add(),
            loops::exact_step(),
            loops::saturating_step(),
        ];
        let cycle = (before + loops::cycle()) / 2.0;
        for (r, t) in rounds.iter_mut().zip(t) {
            r.push(cycle / t);
        }
    }
    let best = rounds.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    });
    let [madd, add, exact, saturating] = best;
    println!("vpmaddwd alone:    {madd:.2} instructions");
    println!("vpaddd alone:      {add:.2} instructions");
    println!(
        "exact step:        {exact:.2} instructions = {:.1} multiply-adds (vpmaddwd + vpaddd: 16 per 2)",
        exact * 8.0
    );
    println!(
        "saturating step:   {saturating:.2} instructions = {:.1} multiply-adds (vpmaddubsw + vpmaddwd + vpaddd: 32 per 3)",
        saturating * 32.0 / 3.0
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("an x86_64 measurement: nothing to do on this architecture");
}

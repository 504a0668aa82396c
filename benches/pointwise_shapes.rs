//! Every pointwise (1x1, stride 1) convolution shape of resnext50_32x4d through the native op,
//! on 1 and 2 threads: the best of 40 runs each, the two thread counts alternated layer by
//! layer so that both see the same moments of a machine whose speed drifts. Prints each
//! shape's time, its multiply-adds per nanosecond, the 2-thread speed-up, and the totals
//! weighted by how often resnext50 runs each shape (33 layers: most of its work).
//!
//! `cargo bench --bench pointwise_shapes` (plain output; criterion's statistics would take
//! minutes for the 26 measurements).

mod common;

use resnext_edge::kernels;
use resnext_edge::kernels::conv::{ConvGeometry, PackedConv};
use std::time::{Duration, Instant};

/// `(input side, in channels, out channels, layers of resnext50 with this shape)`.
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (56, 64, 128, 1),
    (56, 64, 256, 1),
    (56, 256, 128, 2),
    (56, 128, 256, 3),
    (56, 256, 256, 1),
    (28, 256, 512, 4),
    (28, 512, 256, 3),
    (28, 512, 512, 1),
    (14, 512, 1024, 6),
    (14, 1024, 512, 5),
    (14, 1024, 1024, 1),
    (7, 1024, 2048, 3),
    (7, 2048, 1024, 2),
];

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter on "side/cin/cout".
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let isa = kernels::selected();
    println!("kernels: {}", isa.name());
    let mut total = [Duration::ZERO; 2];
    for &(side, cin, cout, layers) in SHAPES {
        let name = format!("{side}/{cin}/{cout}");
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let geom = ConvGeometry {
            in_h: side,
            in_w: side,
            in_c: cin,
            out_c: cout,
            groups: 1,
            kernel: 1,
            stride: 1,
            pad: 0,
        };
        let (w, bias, x, requant) = common::operands(&geom);
        let conv = PackedConv::new(geom, &w, bias, requant, isa.family());
        let mut out = vec![0u8; conv.out_len()];
        // Warm-up: the first tenths of a second of a busy core can run at a lower clock.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            conv.run_threads(isa, &x, None, &mut out, 2);
        }
        let mut best = [Duration::MAX; 2];
        for _ in 0..40 {
            for (threads, best) in [1, 2].into_iter().zip(best.iter_mut()) {
                let t = Instant::now();
                conv.run_threads(isa, &x, None, &mut out, threads);
                *best = (*best).min(t.elapsed());
            }
        }
        let macs = (side * side * cin * cout) as f64;
        println!(
            "{side:>2}x{side:<2} {cin:>4} -> {cout:<4} x{layers}: 1 thread {:6.3} ms ({:5.1} MAC/ns), 2 threads {:6.3} ms (x{:.2})",
            best[0].as_secs_f64() * 1e3,
            macs / best[0].as_nanos() as f64,
            best[1].as_secs_f64() * 1e3,
            best[0].as_secs_f64() / best[1].as_secs_f64(),
        );
        for (t, b) in total.iter_mut().zip(best) {
            *t += b * layers as u32;
        }
    }
    println!(
        "resnext50's pointwise layers: 1 thread {:.2} ms, 2 threads {:.2} ms (x{:.2})",
        total[0].as_secs_f64() * 1e3,
        total[1].as_secs_f64() * 1e3,
        total[0].as_secs_f64() / total[1].as_secs_f64()
    );
}

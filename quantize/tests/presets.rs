//! `resnext-quantize arch`: the presets' counts round to the seed table.

mod common;

use common::deadline::{Deadline, DEADLINE};
use std::process::Command;

#[test]
fn arch_json_matches_the_seed_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .args(["arch", "--json"])
        .output_within(DEADLINE);
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // (name, params in M to 2 places, GFLOPs as the seed table rounds them, places)
    let seed = [
        ("resnext50_32x4d", 25.03, 4.27, 2),
        ("resnext101_32x4d", 44.18, 8.03, 2),
        ("resnext101_32x8d", 88.79, 16.5, 1),
        ("resnext152_32x4d", 59.95, 11.8, 1),
    ];
    assert_eq!(rows.len(), seed.len());
    for (row, (name, params_m, gflops, places)) in rows.iter().zip(seed) {
        assert_eq!(row["name"], name);
        let p = row["params"].as_u64().unwrap() as f64 / 1e6;
        let f = row["flops"].as_u64().unwrap() as f64 / 1e9;
        let round = |v: f64, places: i32| (v * 10f64.powi(places)).round() / 10f64.powi(places);
        assert_eq!(round(p, 2), params_m, "{name} params {p}");
        assert_eq!(round(f, places), gflops, "{name} flops {f}");
    }
}

#[test]
fn arch_table_is_human_readable() {
    let out = Command::new(env!("CARGO_BIN_EXE_resnext-quantize"))
        .arg("arch")
        .output_within(DEADLINE);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("resnext50_32x4d") && l.contains("25.03") && l.contains("4.27")),
        "{text}"
    );
}

//! How the property tests draw their cases: from a fixed seed unless told otherwise, so that
//! CI runs the same cases on every machine and a failure there reproduces anywhere.
//!
//! `RESNEXT_EDGE_PROPTEST_SEED` unset: the fixed [`SEED`]; `random`: a fresh seed; a number:
//! that seed. `RESNEXT_EDGE_PROPTEST_CASES=N` runs N cases per property instead of its own
//! count. The seed is printed (`cargo test` shows it beside a failure). No failure file is
//! written: a shrunk counterexample becomes a named test beside its property.

use proptest::test_runner::{Config, RngSeed};

/// The seed of every run that names none.
pub const SEED: u64 = 20_261_206;

/// The config of a property that runs `cases` cases by default.
pub fn config(cases: u32) -> Config {
    let seed = match std::env::var("RESNEXT_EDGE_PROPTEST_SEED").as_deref() {
        Err(_) => SEED,
        Ok("random") => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id())
        }
        Ok(v) => v
            .parse()
            .expect("RESNEXT_EDGE_PROPTEST_SEED: unset, `random` or a number"),
    };
    let cases = std::env::var("RESNEXT_EDGE_PROPTEST_CASES")
        .ok()
        .map_or(cases, |v| {
            v.parse().expect("RESNEXT_EDGE_PROPTEST_CASES: a number")
        });
    eprintln!("RESNEXT_EDGE_PROPTEST_SEED={seed} RESNEXT_EDGE_PROPTEST_CASES={cases}");
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

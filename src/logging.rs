//! Logging setup shared by the command-line tools: warnings by default, `-v` for progress,
//! `-vv` for details; `RUST_LOG` overrides both.

/// Initializes `env_logger` on stderr for a verbosity count.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
}

//! One module per subcommand of `resnext-edge`, and what they share: the exit codes and the
//! `--kernels` choice. `main.rs` holds the command line and the dispatch.

pub mod bench;
pub mod classify;
pub mod info;
pub mod stream;

use resnext_edge::model::Backend;

/// Exit codes: what a script can tell from them.
pub(crate) mod exit {
    /// Some inputs could not be processed; the others were.
    pub const PARTIAL: u8 = 1;
    /// The command line names something the model or the system does not have.
    pub const USAGE: u8 = 2;
    /// Nothing could be done: the model or every input is unusable.
    pub const FATAL: u8 = 3;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kernels {
    Auto,
    Native,
    Stock,
}

impl Kernels {
    pub(crate) fn backend(self) -> Backend {
        match self {
            Kernels::Auto => Backend::preferred(),
            Kernels::Native => Backend::Native,
            Kernels::Stock => Backend::Stock,
        }
    }

    /// As reported: `native (avx2)`, `stock`.
    pub(crate) fn describe(self) -> String {
        match self.backend() {
            Backend::Native => format!("native ({})", resnext_edge::kernels::selected().name()),
            Backend::Stock => "stock".into(),
        }
    }
}

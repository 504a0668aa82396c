//! One module per subcommand of `resnext-edge`; `main.rs` holds the command line and the
//! dispatch.

pub mod bench;
pub mod classify;
pub mod info;
pub mod stream;

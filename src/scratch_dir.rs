//! A directory under the system's temporary directory, removed with everything in it when the
//! value is dropped: what the tests write their models, images and streams into.
//!
//! Written here rather than taken from the `tempfile` crate on purpose: `tempfile` asks for
//! `rustix`'s default feature, which tract's own `rustix` (through `tar`) does not, so a test
//! build and a plain build of the same target would differ in `rustix`'s features and cargo would
//! build tract twice. Without it the board builds (`targets/build.sh`) reuse every dependency the
//! cross-compiled tests already built.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory that is deleted on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `resnext-edge-PID-N` under [`std::env::temp_dir`]; N counts the directories this
    /// process made, so that tests running in parallel threads never share one.
    pub fn new() -> std::io::Result<ScratchDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("resnext-edge-{}-{n}", std::process::id()));
        // A directory left by an earlier process with the same id (it crashed) is stale.
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir(&path)?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

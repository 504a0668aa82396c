//! Writing output files so that nothing is ever half-written: the bytes go to a temporary file
//! beside the target, are flushed to disk, and only then renamed over it. A failure at any point
//! leaves the previous file (if any) untouched and removes the temporary. A device or pipe given
//! as the output (`/dev/stdout`) is written directly.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A write that failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write: {source}")]
pub struct WriteError {
    pub path: String,
    pub source: std::io::Error,
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        )));
    }
    // A device or pipe (`/dev/stdout`, `/dev/full`, anything under /dev or /proc, which may be a
    // symbolic link to a regular file) has no previous content to keep and must not be replaced
    // by a rename (that would replace the device node or the link): write into it.
    let special = path.starts_with("/dev") || path.starts_with("/proc");
    if special || std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return (|| {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.write_all(bytes)?;
            f.flush()
        })()
        .map_err(err);
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.onnx");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_device_is_written_into_not_replaced() {
        let e = write_atomic(Path::new("/dev/full"), b"x").unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc_enospc()), "{e}");
        assert!(e.to_string().starts_with("/dev/full: cannot write"), "{e}");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device());
        write_atomic(Path::new("/dev/null"), b"discarded").unwrap();
    }

    /// ENOSPC, the same on every Linux architecture.
    fn libc_enospc() -> i32 {
        28
    }

    #[test]
    fn failure_names_the_path_and_keeps_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/m.onnx");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/m.onnx"), "{e}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}

//! `dir:PATH`: the images of a folder, in name order.

use crate::stream::source::{Captured, FrameSource};
use std::path::{Path, PathBuf};

/// `dir:`: each image file of a folder (recursively, in name order), read when its turn comes.
pub struct DirSource {
    files: std::vec::IntoIter<PathBuf>,
}

impl DirSource {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("{}: not a directory", dir.display());
        }
        let (files, errors) = crate::inputs::collect(&[dir.to_path_buf()]);
        for (p, e) in errors {
            log::warn!("{}: {e}", p.display());
        }
        if files.is_empty() {
            anyhow::bail!("{}: no .jpg/.jpeg/.png images in it", dir.display());
        }
        Ok(DirSource {
            files: files.into_iter(),
        })
    }
}

impl FrameSource for DirSource {
    fn next(&mut self) -> Captured {
        let Some(p) = self.files.next() else {
            return Captured::End;
        };
        let name = p.display().to_string();
        match std::fs::read(&p) {
            Ok(bytes) => Captured::Frame {
                data: crate::stream::frame::FrameData::Encoded(bytes),
                name: Some(name),
            },
            Err(e) => Captured::Corrupt(format!("{name}: cannot read: {e}")),
        }
    }

    fn is_live(&self) -> bool {
        false
    }
}

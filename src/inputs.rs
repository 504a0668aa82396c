//! Which files to classify: the files named, and the images under the directories named,
//! walked recursively in name order.

use std::path::{Path, PathBuf};

/// Extensions taken from directories (files named explicitly are taken whatever their name).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// True when `path` has one of [`IMAGE_EXTENSIONS`], in any case.
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Expands `paths` into image files. A path that does not exist or a directory that cannot be
/// read is returned as an error beside the files found, so that one bad argument does not stop
/// the others.
pub fn collect(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, std::io::Error)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files, &mut errors);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push((
                p.clone(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
    }
    (files, errors)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<(PathBuf, std::io::Error)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) => return errors.push((dir.to_path_buf(), e)),
    };
    let mut entries = entries;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, files, errors);
        } else if is_image_name(&p) {
            files.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_in_name_order_and_reports_missing_paths() {
        let dir = crate::scratch_dir::ScratchDir::new().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("b/inner")).unwrap();
        for f in ["b/inner/z.PNG", "b/a.jpg", "c.jpeg", "notes.txt", "a.png"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let (files, errors) = collect(&[d.to_path_buf(), d.join("missing.jpg")]);
        let rel: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(d).unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(rel, ["a.png", "b/a.jpg", "b/inner/z.PNG", "c.jpeg"]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].0.ends_with("missing.jpg"));
    }
}

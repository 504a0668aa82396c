//! Passes over many images on every core, in memory that does not grow with their count.
//!
//! An [`ImageSet`] holds paths, not pixels: each pass decodes and preprocesses an image when it
//! needs it (a JPEG decode and resize cost a few milliseconds, an inference of a ResNeXt hundreds),
//! so a thousand calibration images take no more memory than thirty. [`run_ordered`] splits a
//! pass's images across `jobs` threads and hands their results, in image order, to one fold on
//! the calling thread: sums of floats come out the same bits for any job count, and the results
//! waiting for their turn are at most a few per thread.
//!
//! [`balanced`] picks a deterministic, class-balanced sample of a large folder (ImageNet's
//! `val/<synset>/` layout or any `<class>/` tree): the same folder and count give the same
//! images.

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use resnext_edge::metadata::Preprocessing;
use resnext_edge::preprocess::{decode_file, Preprocessor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Condvar, Mutex};

/// Threads to use when the user names none: every core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A progress bar on stderr with the rate and the time left (hidden when `quiet`).
pub fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec:>11} ({eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The first `count` of `files` (all without a count) taken one class at a time: the first file
/// of every class, then the second of every class, and so on; a file's class is its folder.
/// Classes in name order, files in the order given. A folder without class subfolders is one
/// class: its files in order.
pub fn balanced(files: &[PathBuf], count: Option<usize>) -> Vec<PathBuf> {
    let mut classes: BTreeMap<Option<&Path>, Vec<&PathBuf>> = BTreeMap::new();
    for f in files {
        classes.entry(f.parent()).or_default().push(f);
    }
    let want = count.unwrap_or(files.len()).min(files.len());
    let mut out = Vec::with_capacity(want);
    let mut round = 0;
    while out.len() < want {
        for members in classes.values() {
            if let Some(f) = members.get(round) {
                if out.len() == want {
                    break;
                }
                out.push((*f).clone());
            }
        }
        round += 1;
    }
    out
}

/// Images by path, decoded and preprocessed when a pass needs them.
pub struct ImageSet {
    files: Vec<PathBuf>,
    pre: Preprocessing,
}

/// An [`ImageSet`] and the images left out because they could not be read.
pub struct Opened {
    pub set: ImageSet,
    pub skipped: Vec<(PathBuf, String)>,
}

impl ImageSet {
    /// The first `count` readable images (all by default) of `candidates`, in their order.
    /// Every candidate it takes is decoded once here, on `jobs` threads, so that an unreadable
    /// one is reported (and skipped) before any pass; it is an error when none is readable.
    pub fn open(
        candidates: &[PathBuf],
        count: Option<usize>,
        pre: &Preprocessing,
        jobs: usize,
        quiet: bool,
    ) -> Result<Opened> {
        let want = count.unwrap_or(candidates.len()).min(candidates.len());
        let bar = progress(want as u64, "reading", quiet);
        let (mut files, mut skipped) = (Vec::with_capacity(want), Vec::new());
        run_ordered(
            candidates.len(),
            jobs,
            || (),
            |_, i| decode_file(&candidates[i]).map(|_| ()),
            |i, r| {
                match r {
                    Ok(()) => {
                        files.push(candidates[i].clone());
                        bar.inc(1);
                    }
                    Err(e) => {
                        log::warn!("skipping image: {e}");
                        skipped.push((candidates[i].clone(), e.to_string()));
                    }
                }
                files.len() < want
            },
        );
        bar.finish_and_clear();
        if files.is_empty() {
            bail!(
                "none of the {} images could be read (first: {}: {})",
                candidates.len(),
                skipped[0].0.display(),
                skipped[0].1
            );
        }
        let set = ImageSet {
            files,
            pre: pre.clone(),
        };
        Ok(Opened { set, skipped })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// A preprocessor for one thread of a pass.
    pub fn preprocessor(&self) -> Preprocessor {
        Preprocessor::new(self.pre.clone())
    }

    /// Image `i`, decoded and preprocessed (`[3, crop, crop]`, planar).
    pub fn input(&self, p: &mut Preprocessor, i: usize) -> Result<Vec<f32>> {
        Ok(p.preprocess(&decode_file(&self.files[i])?))
    }

    /// One pass: `map(image index, its input)` on `jobs` threads, each with its own
    /// preprocessor; `fold(index, result)` on this thread, in image order. The first error
    /// (of map or fold) ends the pass.
    pub fn pass<R: Send>(
        &self,
        jobs: usize,
        bar: &ProgressBar,
        map: impl Fn(usize, Vec<f32>) -> Result<R> + Sync,
        mut fold: impl FnMut(usize, R) -> Result<()>,
    ) -> Result<()> {
        let mut failed = None;
        run_ordered(
            self.len(),
            jobs,
            || self.preprocessor(),
            |p, i| self.input(p, i).and_then(|x| map(i, x)),
            |i, r| {
                bar.inc(1);
                match r.and_then(|r| fold(i, r)) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            },
        );
        failed.map_or(Ok(()), Err)
    }
}

/// Results a thread may run ahead of the fold, per thread.
const AHEAD: usize = 2;

/// Runs `map(state, i)` for `i` in `0..n` on `jobs` threads (each with its own `state` from
/// `init`) and `fold(i, result)` on the calling thread in the order of `i`, until `fold` returns
/// false or every item is done. Threads take the next item only while it is fewer than
/// `AHEAD * jobs` items past the fold, so results wait in a bounded buffer. One job runs on the
/// calling thread.
pub fn run_ordered<S, R: Send>(
    n: usize,
    jobs: usize,
    init: impl Fn() -> S + Sync,
    map: impl Fn(&mut S, usize) -> R + Sync,
    mut fold: impl FnMut(usize, R) -> bool,
) {
    let jobs = jobs.clamp(1, n.max(1));
    if jobs == 1 {
        let mut state = init();
        for i in 0..n {
            if !fold(i, map(&mut state, i)) {
                return;
            }
        }
        return;
    }
    struct Turn {
        next: usize,
        folded: usize,
        stop: bool,
    }
    let turn = Mutex::new(Turn {
        next: 0,
        folded: 0,
        stop: false,
    });
    let moved = Condvar::new();
    let window = AHEAD * jobs;
    let lock = || turn.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, R)>();
        for _ in 0..jobs {
            let tx = tx.clone();
            let (init, map, moved, lock) = (&init, &map, &moved, &lock);
            scope.spawn(move || {
                let mut state = init();
                loop {
                    let i = {
                        let mut t = lock();
                        loop {
                            if t.stop || t.next >= n {
                                return;
                            }
                            if t.next < t.folded + window {
                                t.next += 1;
                                break t.next - 1;
                            }
                            t = moved.wait(t).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    if tx.send((i, map(&mut state, i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut due = 0;
        'fold: for (i, r) in rx.iter() {
            waiting.insert(i, r);
            while let Some(r) = waiting.remove(&due) {
                let go = fold(due, r);
                due += 1;
                let mut t = lock();
                t.folded = due;
                t.stop = !go;
                drop(t);
                moved.notify_all();
                if !go {
                    break 'fold;
                }
            }
        }
        // Whatever is still queued is dropped with the receiver; the threads see `stop` or the
        // closed channel and end.
        drop(rx);
        lock().stop = true;
        moved.notify_all();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn results_are_folded_in_order_whatever_the_job_count() {
        for jobs in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            // Later items finish first: the fold must still see them in order.
            run_ordered(
                40,
                jobs,
                || (),
                |_, i| {
                    std::thread::sleep(std::time::Duration::from_micros(((40 - i) * 50) as u64));
                    i * i
                },
                |i, r| {
                    seen.push((i, r));
                    true
                },
            );
            let want: Vec<_> = (0..40).map(|i| (i, i * i)).collect();
            assert_eq!(seen, want, "{jobs} jobs");
        }
    }

    #[test]
    fn a_fold_that_stops_ends_the_pass_and_threads_stay_within_their_window() {
        let started = AtomicUsize::new(0);
        let mut folded = 0;
        run_ordered(
            1000,
            2,
            || (),
            |_, i| {
                started.fetch_add(1, Ordering::Relaxed);
                i
            },
            |_, _| {
                folded += 1;
                folded < 10
            },
        );
        assert_eq!(folded, 10);
        let started = started.into_inner();
        assert!(
            (10..=10 + AHEAD * 2).contains(&started),
            "{started} started"
        );
    }

    #[test]
    fn the_balanced_sample_takes_classes_in_turn() {
        let files: Vec<PathBuf> = ["a/1", "a/2", "a/3", "b/1", "c/1", "c/2"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.display().to_string()).collect()
        };
        assert_eq!(
            names(balanced(&files, Some(4))),
            ["a/1", "b/1", "c/1", "a/2"]
        );
        assert_eq!(
            names(balanced(&files, None)),
            ["a/1", "b/1", "c/1", "a/2", "c/2", "a/3"]
        );
        // One folder: name order, as given.
        let flat: Vec<PathBuf> = ["x/3", "x/1", "x/2"].iter().map(PathBuf::from).collect();
        assert_eq!(names(balanced(&flat, Some(2))), ["x/3", "x/1"]);
        assert_eq!(balanced(&files, Some(0)), Vec::<PathBuf>::new());
    }
}

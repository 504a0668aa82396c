//! The stream loop: a capture thread feeding the newest-frame slot, inference taking from it,
//! results and periodic statistics handed to the caller, and the final accounting.

use super::frame::{Frame, FrameData};
use super::slot::{Counts, FrameSlot, Take};
use super::source::{Captured, FrameSource};
use crate::classify::Classifier;
use crate::preprocess::decode_bytes;
use crate::topk::Prediction;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the stream runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub top_k: usize,
    /// Stop after this many classified frames.
    pub max_frames: Option<u64>,
    /// Emit [`Event::Stats`] this often.
    pub stats_every: Option<Duration>,
    /// Classify every frame even from a live source (capture waits; nothing is dropped).
    pub every_frame: bool,
}

/// The answer for one frame (one JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct FrameResult {
    pub frame: u64,
    /// Capture time, in ms since the stream started.
    pub ts_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub top: Vec<Prediction>,
    /// Capture to result.
    pub latency_ms: f64,
    /// Frames dropped so far.
    pub dropped: u64,
    /// Of the latency: decoding and preprocessing, and the model.
    pub preprocess_ms: f64,
    pub inference_ms: f64,
}

/// Statistics over the last interval.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub fps: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub dropped: u64,
    pub corrupt: u64,
    pub processed: u64,
    /// Resident memory of the process (Linux), for watching a long-running stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mb: Option<f64>,
}

/// The resident set size from `/proc/self/status`, in MB; `None` where there is no procfs.
pub fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// What the loop reports, in order.
#[derive(Debug)]
pub enum Event<'a> {
    Result(&'a FrameResult),
    /// A frame that was read but could not be used.
    Corrupt {
        frame: u64,
        ts_ms: f64,
        error: &'a str,
    },
    Stats(&'a Stats),
}

/// A corrupt frame noticed by the capture thread, reported by the inference side.
struct CorruptRead {
    seq: u64,
    at: Instant,
    reason: String,
}

/// Runs the stream until the source ends, `max_frames` frames are classified, or `stop` is
/// set; returns the final counts. `on_event` sees every result, corrupt frame and statistics
/// line. An error is returned when the model itself fails, or [`SourceFailed`] when the source
/// cannot deliver frames at all.
pub fn run(
    classifier: &mut Classifier,
    mut source: Box<dyn FrameSource>,
    opts: &Options,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Event),
) -> anyhow::Result<Counts> {
    let slot = Arc::new(FrameSlot::new());
    let corrupt_reads = Arc::new(std::sync::Mutex::new(Vec::<CorruptRead>::new()));
    let wait_for_room = opts.every_frame || !source.is_live();
    let stopper = source.stopper();
    let start = Instant::now();
    let failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let capture = {
        let slot = slot.clone();
        let corrupt_reads = corrupt_reads.clone();
        let failure = failure.clone();
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let mut seq = 0u64;
                loop {
                    match source.next() {
                        Captured::Frame { data, name } => {
                            let frame = Frame {
                                seq,
                                captured: Instant::now(),
                                name,
                                data,
                            };
                            if !slot.put(frame, wait_for_room) {
                                break;
                            }
                        }
                        Captured::Corrupt(reason) => {
                            let mut reads = corrupt_reads.lock().unwrap_or_else(|e| e.into_inner());
                            // Reported lines are bounded; the count never is.
                            if reads.len() < 1024 {
                                reads.push(CorruptRead {
                                    seq,
                                    at: Instant::now(),
                                    reason,
                                });
                            }
                            drop(reads);
                            slot.corrupt_read();
                        }
                        Captured::End => break,
                        Captured::Failed(reason) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                            break;
                        }
                    }
                    seq += 1;
                }
                slot.end();
            })?
    };

    let ms_since_start = |t: Instant| (t.saturating_duration_since(start)).as_secs_f64() * 1e3;
    let mut window: Vec<f64> = Vec::new();
    let mut window_start = Instant::now();
    let mut processed = 0u64;
    let outcome = loop {
        for c in std::mem::take(&mut *corrupt_reads.lock().unwrap_or_else(|e| e.into_inner())) {
            log::warn!("frame {}: {}", c.seq, c.reason);
            on_event(Event::Corrupt {
                frame: c.seq,
                ts_ms: ms_since_start(c.at),
                error: &c.reason,
            });
        }
        if let Some(every) = opts.stats_every {
            if window_start.elapsed() >= every {
                let counts = slot.counts();
                let secs = window_start.elapsed().as_secs_f64();
                let stats = Stats {
                    fps: window.len() as f64 / secs,
                    latency_p50_ms: percentile(&mut window, 0.50),
                    latency_p99_ms: percentile(&mut window, 0.99),
                    dropped: counts.frames_dropped,
                    corrupt: counts.frames_corrupt,
                    processed: counts.frames_processed,
                    rss_mb: rss_mb(),
                };
                on_event(Event::Stats(&stats));
                window.clear();
                window_start = Instant::now();
            }
        }
        if stop.load(Ordering::SeqCst) || opts.max_frames.is_some_and(|m| processed >= m) {
            break Ok(());
        }
        let frame = match slot.take(Duration::from_millis(100)) {
            Take::Frame(f) => f,
            Take::Idle => continue,
            Take::Ended => {
                if corrupt_reads.lock().map(|r| r.is_empty()).unwrap_or(true) {
                    break Ok(());
                }
                continue; // report the last corrupt frames first
            }
        };
        let what = frame
            .name
            .clone()
            .unwrap_or_else(|| format!("frame {}", frame.seq));
        let t0 = Instant::now();
        let decoded = match frame.data {
            FrameData::Encoded(bytes) => decode_bytes(&bytes, &what).map_err(|e| e.to_string()),
            FrameData::Rgb(img) => Ok(img),
        };
        let img = match decoded {
            Ok(img) => img,
            Err(e) => {
                slot.corrupt_taken();
                log::warn!("{e}");
                on_event(Event::Corrupt {
                    frame: frame.seq,
                    ts_ms: ms_since_start(frame.captured),
                    error: &e,
                });
                continue;
            }
        };
        let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
        let c = match classifier.classify_rgb(&what, &img, opts.top_k, false) {
            Ok(c) => c,
            Err(e) => break Err(anyhow::anyhow!("{what}: the model failed: {e}")),
        };
        slot.processed();
        processed += 1;
        let latency_ms = frame.captured.elapsed().as_secs_f64() * 1e3;
        window.push(latency_ms);
        let result = FrameResult {
            frame: frame.seq,
            ts_ms: ms_since_start(frame.captured),
            name: frame.name,
            top: c.top,
            latency_ms,
            dropped: slot.counts().frames_dropped,
            preprocess_ms: decode_ms + c.preprocess_ms,
            inference_ms: c.latency_ms,
        };
        on_event(Event::Result(&result));
    };
    let counts = slot.stop();
    if let Some(stop_capture) = stopper {
        stop_capture();
    }
    if capture.is_finished() {
        let _ = capture.join();
    }
    // Frames the capture thread read after the last look are counted, not reported.
    outcome?;
    let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    match failed {
        Some(reason) => Err(SourceFailed { counts, reason }.into()),
        None => Ok(counts),
    }
}

/// The error [`run`] returns when the source failed ([`Captured::Failed`]): what was counted
/// until then, and why the source could not go on.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SourceFailed {
    pub counts: Counts,
    pub reason: String,
}

/// The `q` quantile of `values` (nearest rank); 0 when empty.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.5), 50.0);
        assert_eq!(percentile(&mut v, 0.99), 99.0);
        assert_eq!(percentile(&mut [7.0], 0.99), 7.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        let mb = super::rss_mb().expect("procfs");
        assert!(mb > 1.0 && mb < 100_000.0, "{mb}");
    }
}

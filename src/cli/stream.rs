//! `stream`: the command-line face of [`resnext_edge::stream`] — loading, the trigger and its
//! pin, Ctrl-C, and the text / JSON lines.

use super::exit;
use anyhow::Context;
use resnext_edge::classify::Classifier;
use resnext_edge::gpio::{BoardPin, PinSpec, Trigger, TriggerSpec};
use resnext_edge::model::{Backend, Model};
use resnext_edge::stream::{
    Counts, Event, FrameResult, Options, Restarts, SourceFailed, SourceSpec, Stats,
};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct StreamArgs {
    pub source: SourceSpec,
    pub json: bool,
    pub restarts: Restarts,
    pub trigger: Option<(TriggerSpec, PinSpec)>,
    pub on_frames: u32,
    pub off_frames: u32,
    pub options: Options,
}

fn fail(code: u8, e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(code)
}

pub fn run(model: &Path, backend: Backend, args: StreamArgs) -> ExitCode {
    let mut classifier = match Model::load_with(model, backend)
        .map(Classifier::new)
        .context("cannot load the model")
    {
        Ok(c) => c,
        Err(e) => return fail(exit::FATAL, e),
    };
    let mut trigger = match &args.trigger {
        None => None,
        Some((spec, pin)) => {
            let class = match spec.resolve(classifier.labels()) {
                Ok(c) => c,
                Err(e) => return fail(exit::USAGE, anyhow::anyhow!("--trigger: {e}")),
            };
            let opened = BoardPin::open(pin).and_then(|p| {
                Trigger::new(p, class, spec.min_score, args.on_frames, args.off_frames)
                    .map_err(anyhow::Error::from)
            });
            match opened {
                Ok(t) => {
                    log::info!(
                        "trigger: `{}` (class {class}) at score >= {}, {} frames on, {} off",
                        classifier.labels()[class],
                        spec.min_score,
                        args.on_frames,
                        args.off_frames
                    );
                    Some(t)
                }
                Err(e) => return fail(exit::FATAL, e),
            }
        }
    };
    let source = match args.source.open(args.restarts) {
        Ok(s) => s,
        Err(e) => return fail(exit::FATAL, e.context("cannot open the source")),
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C ends at once, for a source that hangs.
        let handler = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        if let Err(e) = handler {
            log::warn!("cannot catch Ctrl-C: {e}");
        }
    }

    let json = args.json;
    let result = resnext_edge::stream::run(
        &mut classifier,
        source,
        &args.options,
        &stop,
        |event| match event {
            Event::Result(r) => {
                print_result(r, json);
                if let Some(t) = trigger.as_mut() {
                    match t.observe(r.top.first()) {
                        Ok(Some(high)) => log::info!(
                            "frame {}: trigger {}",
                            r.frame,
                            if high { "on" } else { "off" }
                        ),
                        Ok(None) => {}
                        Err(e) => log::error!("frame {}: {e}", r.frame),
                    }
                }
            }
            Event::Corrupt {
                frame,
                ts_ms,
                error,
            } => {
                if json {
                    out!(
                        "{}",
                        serde_json::json!({ "frame": frame, "ts_ms": round1(ts_ms), "error": error })
                    );
                }
            }
            Event::Stats(s) => print_stats(s, json),
        },
    );
    if let Some(t) = trigger {
        if let Err(e) = t.finish() {
            log::error!("{e}");
        }
    }
    match result {
        Ok(counts) => {
            print_summary(&counts, json);
            ExitCode::SUCCESS
        }
        // The source gave up (a capture command that cannot run): what was classified until
        // then is still accounted for, and the exit code says the input failed.
        Err(e) => match e.downcast::<SourceFailed>() {
            Ok(failed) => {
                print_summary(&failed.counts, json);
                fail(
                    exit::PARTIAL,
                    anyhow::anyhow!("the source failed: {}", failed.reason),
                )
            }
            Err(e) => fail(exit::FATAL, e),
        },
    }
}

fn print_summary(counts: &Counts, json: bool) {
    if json {
        out!("{}", serde_json::json!({ "summary": counts }));
    } else {
        out!(
            "{} frames read: {} classified, {} dropped, {} corrupt",
            counts.frames_read,
            counts.frames_processed,
            counts.frames_dropped,
            counts.frames_corrupt
        );
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn print_result(r: &FrameResult, json: bool) {
    if json {
        out!(
            "{}",
            serde_json::to_string(r).expect("plain data serializes")
        );
        return;
    }
    let name = r.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default();
    out!(
        "frame {}{name}: {}  [{:.1} ms, {} dropped]",
        r.frame,
        resnext_edge::topk::format_top(&r.top),
        r.latency_ms,
        r.dropped
    );
}

fn print_stats(s: &Stats, json: bool) {
    if json {
        eprintln!("{}", serde_json::json!({ "stats": s }));
    } else {
        eprintln!(
            "stats: {:.1} fps, latency p50 {:.1} ms p99 {:.1} ms, {} classified, {} dropped, {} corrupt{}",
            s.fps,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.processed,
            s.dropped,
            s.corrupt,
            s.rss_mb
                .map(|m| format!(", RSS {m:.1} MB"))
                .unwrap_or_default()
        );
    }
}

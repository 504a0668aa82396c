//! `resnext-edge`: the command-line runtime.

use clap::{Parser, Subcommand};

/// `println!` that ends the program quietly when standard output is closed (`| head`), instead
/// of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("cannot write to standard output: {e}");
        }
    }};
}

mod cli;
use cli::{exit, Kernels};
use resnext_edge::gpio::{PinSpec, TriggerSpec};
use resnext_edge::stream::SourceSpec;
use std::path::PathBuf;
use std::process::ExitCode;

const STREAM_HELP: &str = "Examples:
  ffmpeg -i video.mp4 -f mjpeg - | resnext-edge stream model.onnx --source mjpeg:- --json
  resnext-edge stream model.onnx --source 'cmd:rpicam-vid -t 0 --codec mjpeg -o -'
  resnext-edge stream model.onnx --source v4l2:/dev/video0:640x480 --trigger 'tabby:0.7' --gpio gpiochip0:17

Frames from a live source (pipe, command, camera) are classified newest first: frames the model
had no time for are dropped and counted. Files and folders are classified completely. Corrupt
frames are counted and skipped. On end of input, Ctrl-C or SIGTERM, a summary is printed and the
exit code is 0.";

#[derive(Parser)]
#[command(
    name = "resnext-edge",
    version,
    about = "Classify images with a ResNeXt ONNX model (float or int8) on small boards",
    after_help = "Exit codes: 0 success; 1 some inputs failed (the others were processed); 2 bad command line; 3 nothing could be done (model unusable, no inputs).\nLogging: -v for progress, -vv for details, or RUST_LOG=debug."
)]
struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify image files, or every .jpg/.jpeg/.png under directories (recursively).
    Classify {
        /// ONNX model (from `resnext-quantize export` or `quantize`).
        model: PathBuf,
        /// Image files or directories.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, short = 'k', default_value_t = 5)]
        top_k: usize,
        /// One JSON object per line: {"image", "top": [{"index", "label", "score"}], "latency_ms", ...}.
        #[arg(long)]
        json: bool,
        /// Also print the raw logits.
        #[arg(long)]
        logits: bool,
        /// Who runs the int8 convolutions: the native kernels, stock tract, or auto (the native
        /// kernels, except on an armv7 CPU without NEON, where only their generic form would
        /// run). RESNEXT_EDGE_KERNELS=SET forces one of the CPU's kernel sets (`info` lists
        /// what runs each layer).
        #[arg(long, value_enum, default_value = "auto")]
        kernels: Kernels,
        /// Threads for the native kernels (default: every core).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// Classify a stream of frames (a folder, an MJPEG or raw pipe, a capture command, a camera),
    /// always the newest frame, optionally switching a GPIO pin when a class shows up.
    #[command(after_help = STREAM_HELP)]
    Stream {
        /// ONNX model.
        model: PathBuf,
        /// Where frames come from: dir:PATH | mjpeg:-|FILE | raw:WxH:rgb24:-|FILE |
        /// cmd:COMMAND | v4l2:/dev/videoN[:WxH].
        #[arg(long, value_name = "SRC")]
        source: SourceSpec,
        /// How many classes to show per frame.
        #[arg(long, short = 'k', default_value_t = 5)]
        top_k: usize,
        /// One JSON object per line: {"frame", "ts_ms", "top", "latency_ms", "dropped", ...},
        /// then {"summary": {...}}.
        #[arg(long)]
        json: bool,
        /// Stop after this many classified frames.
        #[arg(long, value_name = "N")]
        max_frames: Option<u64>,
        /// A statistics line on stderr this often (fps, latency p50/p99, dropped, corrupt); 0: never.
        #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = seconds)]
        stats_every: f64,
        /// Classify every frame even from a live source (capture waits instead of dropping).
        #[arg(long)]
        every_frame: bool,
        /// cmd: sources: restart the command at most this many times when it exits (default: always).
        #[arg(long, value_name = "N")]
        max_restarts: Option<u32>,
        /// cmd: sources: a command that writes nothing for this long is killed and restarted; 0: never.
        #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = seconds)]
        stall_timeout: f64,
        /// Watch for a class: the --gpio pin goes high after --on-frames consecutive frames whose
        /// top-1 is LABEL (a label, its first name, or a class number) with at least MIN_SCORE
        /// (default 0.5), and low after --off-frames frames without.
        #[arg(long, value_name = "LABEL[:MIN_SCORE]", requires = "gpio")]
        trigger: Option<TriggerSpec>,
        /// The pin the trigger drives: CHIP:LINE (chip by path, name or label, e.g. gpiochip0:17,
        /// pinctrl-rp1:17), or `mock` to print the transitions instead (a dry run).
        #[arg(long, value_name = "CHIP:LINE|mock", requires = "trigger")]
        gpio: Option<PinSpec>,
        /// Consecutive matching frames before the pin goes high.
        #[arg(long, value_name = "N", default_value_t = 3)]
        on_frames: u32,
        /// Consecutive frames without a match before the pin goes low.
        #[arg(long, value_name = "M", default_value_t = 5)]
        off_frames: u32,
        #[arg(long, value_enum, default_value = "auto")]
        kernels: Kernels,
        /// Threads for the native kernels (default: every core).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// Time the model on one input: warm-up runs, then timed runs (median, p90, min).
    Bench {
        /// ONNX model.
        model: PathBuf,
        /// Timed runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Who runs the int8 convolutions: the native kernels, stock tract (the same file
        /// without the native rewrite), or auto (the native kernels, except on an armv7 CPU
        /// without NEON).
        #[arg(long, value_enum, default_value = "auto")]
        kernels: Kernels,
        /// Threads for the native kernels (default: every core; stock tract uses one).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Also time every layer and report the time per layer kind (adds "profile" to
        /// --json). Timing each node adds a little overhead to the totals.
        #[arg(long)]
        profile: bool,
        /// One JSON object: {"median_ms", "p90_ms", "min_ms", "runs", "threads", "kernels"}.
        #[arg(long)]
        json: bool,
    },
    /// List the model's layers and what runs each (a native kernel, or stock tract).
    Info {
        /// ONNX model.
        model: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        kernels: Kernels,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// A duration option in seconds: a finite number, 0 or more.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more)")),
    }
}

fn main() -> ExitCode {
    keep_large_allocations_mapped();
    let cli = Cli::parse();
    resnext_edge::logging::init(cli.verbose);
    match cli.command {
        Command::Classify {
            model,
            images,
            top_k,
            json,
            logits,
            kernels,
            threads,
        } => {
            set_threads(threads);
            cli::classify::run(&model, &images, top_k, json, logits, kernels)
        }
        Command::Bench {
            model,
            runs,
            warmup,
            kernels,
            threads,
            profile,
            json,
        } => {
            set_threads(threads);
            let opts = cli::bench::Options {
                runs,
                warmup,
                kernels,
                profile,
                json,
            };
            fatal_on_error(cli::bench::run(&model, &opts))
        }
        Command::Info {
            model,
            kernels,
            json,
        } => fatal_on_error(cli::info::run(&model, kernels, json)),
        Command::Stream {
            model,
            source,
            top_k,
            json,
            max_frames,
            stats_every,
            every_frame,
            max_restarts,
            stall_timeout,
            trigger,
            gpio,
            on_frames,
            off_frames,
            kernels,
            threads,
        } => {
            set_threads(threads);
            let opts = cli::stream::StreamArgs {
                source,
                json,
                restarts: resnext_edge::stream::Restarts {
                    max_restarts,
                    // 0 (or anything that is not a duration): no watchdog.
                    stall_timeout: std::time::Duration::try_from_secs_f64(stall_timeout)
                        .ok()
                        .filter(|d| !d.is_zero()),
                },
                trigger: trigger.zip(gpio),
                on_frames,
                off_frames,
                options: resnext_edge::stream::Options {
                    top_k,
                    max_frames,
                    // 0 (or anything that is not a duration): no statistics.
                    stats_every: std::time::Duration::try_from_secs_f64(stats_every)
                        .ok()
                        .filter(|d| !d.is_zero()),
                    every_frame,
                },
            };
            cli::stream::run(&model, kernels.backend(), opts)
        }
    }
}

/// glibc serves an allocation of 128 KiB or more with its own mapping, returned to the system
/// when freed, but after each such free it raises that threshold to the freed size: the
/// weights a model load frees (the protobuf's, as they are packed) would then come back as
/// heap memory that is never returned, and a resnext50 load would peak at 53 MB instead of 45.
/// Setting the threshold fixes it at 128 KiB. musl (the board builds) always maps large
/// allocations.
fn keep_large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; called first thing in `main`, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn set_threads(threads: Option<usize>) {
    resnext_edge::kernels::set_threads(threads.unwrap_or(0));
}

fn fatal_on_error(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FATAL)
        }
    }
}

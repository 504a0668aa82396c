//! `resnext-edge stream` end to end, with real parts: MJPEG and raw streams of real JPEG frames
//! (encoded by the tests, `common::frames`), piped in through real pipes, read from files,
//! produced by real capture commands (`sh`, `cat`, `head`) that die, stall and are restarted;
//! corrupt frames in the middle; the GPIO trigger's dry run; SIGTERM. Every test checks that each
//! frame sent is accounted for: processed + dropped + corrupt = frames sent. Two tests use ffmpeg
//! itself as the camera; where it is not installed they say so and do not run
//! (`RESNEXT_EDGE_REQUIRE_FFMPEG=1` makes that a failure). Every program a test starts has a
//! deadline (`common::deadline`).

mod common;

use common::deadline::{describe, drain, stop_group, wait_within, Deadline};
use common::frames::{have_ffmpeg, jpeg_frames, mjpeg, raw_rgb};
use common::{colour_model, json_lines, ScratchDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What one `stream` run of these tests may take.
const STREAM_DEADLINE: Duration = Duration::from_secs(120);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resnext-edge"))
}

struct Setup {
    dir: ScratchDir,
    model: PathBuf,
}

fn setup() -> Setup {
    let dir = ScratchDir::new().unwrap();
    let model = dir.path().join("colours.onnx");
    colour_model(&model);
    Setup { dir, model }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `bytes` into the scratch directory.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// The summary line, checked against the frames sent.
fn summary(o: &Output, sent: u64) -> Value {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {stderr}", o.status.code());
    let lines = json_lines(o);
    let s = lines.last().expect("a summary line")["summary"].clone();
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    assert_eq!(n("frames_read"), sent, "{s}\n{stderr}");
    assert_eq!(
        n("frames_processed") + n("frames_dropped") + n("frames_corrupt"),
        sent,
        "{s}"
    );
    // Every classified frame has its line, with the fields a consumer relies on.
    let results: Vec<&Value> = lines.iter().filter(|l| l.get("top").is_some()).collect();
    assert_eq!(results.len() as u64, n("frames_processed"));
    for r in &results {
        for k in ["frame", "ts_ms", "latency_ms", "dropped"] {
            assert!(r[k].is_number(), "{k} in {r}");
        }
    }
    s
}

/// The `{"frame", "ts_ms", "error"}` lines of a run.
fn error_lines(o: &Output) -> Vec<Value> {
    json_lines(o)
        .into_iter()
        .filter(|l| l.get("error").is_some())
        .collect()
}

/// Runs `stream` on `source` to its end, with `stdin` written into its standard input through
/// a pipe (closed when all is written), within [`STREAM_DEADLINE`].
fn stream(s: &Setup, source: &str, extra: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut cmd = bin();
    cmd.arg("stream")
        .arg(&s.model)
        .args(["--source", source, "--json", "--top-k", "2"])
        .args(extra);
    let Some(bytes) = stdin else {
        return cmd.output_within(STREAM_DEADLINE);
    };
    let what = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_in_group();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = pipe.write_all(&bytes);
    });
    finish(child, &what)
}

/// Waits for a `stream` started with piped stdout and stderr, within [`STREAM_DEADLINE`].
fn finish(mut child: std::process::Child, what: &str) -> Output {
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_within(&mut child, STREAM_DEADLINE, what, || {
        String::from_utf8_lossy(
            &stderr
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default(),
        )
        .into_owned()
    });
    let ten = Duration::from_secs(10);
    Output {
        status,
        stdout: stdout
            .recv_timeout(ten)
            .expect("stdout ends with the stream"),
        stderr: stderr
            .recv_timeout(ten)
            .expect("stderr ends with the stream"),
    }
}

/// Checks a run that read `sent` frames of a clean stream through a live pipe.
fn check_live_pipe(o: &Output, sent: u64) {
    let sum = summary(o, sent);
    assert_eq!(sum["frames_corrupt"], 0);
    assert!(sum["frames_processed"].as_u64().unwrap() >= 1);
    let lines = json_lines(o);
    // --top-k defaults to 5; the model has 3 classes.
    assert_eq!(lines[0]["top"].as_array().unwrap().len(), 3);
    // Frames are numbered in stream order, and results come in order.
    let frames: Vec<u64> = lines.iter().filter_map(|l| l["frame"].as_u64()).collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
    assert!(*frames.last().unwrap() < sent);
}

/// `stream --source mjpeg:-` with its standard input connected to `producer`'s output.
fn stream_from(s: &Setup, mut producer: Command) -> Output {
    let mut producer_child = producer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn_in_group();
    let mut cmd = bin();
    cmd.arg("stream")
        .arg(&s.model)
        .args(["--source", "mjpeg:-", "--json", "--stats-every", "0.2"]);
    let what = describe(&cmd);
    let child = cmd
        .stdin(producer_child.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_in_group();
    let o = finish(child, &what);
    let status = wait_within(
        &mut producer_child,
        STREAM_DEADLINE,
        &describe(&producer),
        String::new,
    );
    assert!(status.success(), "{} failed", describe(&producer));
    o
}

#[test]
fn an_mjpeg_pipe_from_a_program_is_classified_and_every_frame_accounted_for() {
    let s = setup();
    let file = s.file("clip.mjpeg", &mjpeg(&jpeg_frames(640, 480, 90)));
    // A real program writes straight into the stream's standard input, as fast as it can.
    let mut cat = Command::new("cat");
    cat.arg(&file);
    check_live_pipe(&stream_from(&s, cat), 90);
}

#[test]
fn ffmpeg_as_the_camera_through_a_pipe() {
    if !have_ffmpeg("ffmpeg_as_the_camera_through_a_pipe") {
        return;
    }
    let s = setup();
    let mut ff = Command::new("ffmpeg");
    ff.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x480:rate=30"])
        .args(["-frames:v", "90", "-f", "mjpeg", "-"]);
    check_live_pipe(&stream_from(&s, ff), 90);
}

#[test]
fn a_corrupt_and_a_garbage_frame_in_the_middle_are_counted_and_skipped() {
    let s = setup();
    let frames = jpeg_frames(320, 240, 12);
    let mut bytes = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        match i {
            4 => bytes.extend_from_slice(&frame[..frame.len() / 2]), // cut in half
            7 => {
                bytes.extend_from_slice(b"\xff\xd8\x12garbage"); // SOI, then nonsense
                bytes.extend_from_slice(frame);
            }
            9 => {
                bytes.extend_from_slice(b"noise between frames");
                bytes.extend_from_slice(frame);
            }
            _ => bytes.extend_from_slice(frame),
        }
    }
    let file = s.file("broken.mjpeg", &bytes);
    // From a file (not live): every good frame is classified. 12 frames + 1 garbage frame.
    let o = stream(&s, &format!("mjpeg:{}", file.display()), &[], None);
    let sum = summary(&o, 13);
    assert_eq!(sum["frames_corrupt"], 2);
    assert_eq!(sum["frames_processed"], 11);
    assert_eq!(sum["frames_dropped"], 0);
    let errors = error_lines(&o);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["frame"], 4);
    assert!(errors[0]["error"].as_str().unwrap().contains("truncated"));
    assert_eq!(errors[1]["frame"], 7);
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 20 bytes between frames"));

    // The same bytes through a pipe (live): the accounting still holds.
    let o = stream(&s, "mjpeg:-", &[], Some(bytes));
    let sum = summary(&o, 13);
    assert_eq!(sum["frames_corrupt"], 2);
}

#[test]
fn a_capture_command_that_dies_mid_frame_is_restarted() {
    let s = setup();
    let frames = jpeg_frames(320, 240, 3);
    let file = s.file("three.mjpeg", &mjpeg(&frames));
    // Each run delivers two frames and dies in the middle of the third.
    let cut = frames[0].len() + frames[1].len() + frames[2].len() / 2;
    let cmd = format!("cmd:head -c {cut} {}", file.display());
    let o = stream(&s, &cmd, &["--max-restarts", "2", "--every-frame"], None);
    let sum = summary(&o, 9);
    assert_eq!(sum["frames_processed"], 6);
    assert_eq!(sum["frames_corrupt"], 3);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("restarting the capture command"),
        "{stderr}"
    );
}

#[test]
fn ffmpeg_as_the_capture_command_three_short_runs() {
    if !have_ffmpeg("ffmpeg_as_the_capture_command_three_short_runs") {
        return;
    }
    let s = setup();
    let cmd = "cmd:ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc=size=320x240:rate=30 -frames:v 10 -f mjpeg -";
    let o = stream(&s, cmd, &["--max-restarts", "2"], None);
    let sum = summary(&o, 30);
    assert_eq!(sum["frames_corrupt"], 0);
}

#[test]
fn a_capture_command_that_cannot_run_ends_the_stream_with_its_message() {
    let s = setup();
    let start = Instant::now();
    let o = stream(&s, "cmd:no-such-program --codec mjpeg -o -", &[], None);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    // The shell's own words, and the counts of what there was (nothing).
    assert!(stderr.contains("no-such-program: not found"), "{stderr}");
    assert!(stderr.contains("cannot run"), "{stderr}");
    let last = json_lines(&o).pop().expect("a summary line");
    assert_eq!(last["summary"]["frames_read"], 0, "{last}");
    assert!(!stderr.contains("restarting"), "{stderr}");
}

#[test]
fn a_frame_claiming_a_huge_size_is_counted_corrupt_and_the_stream_goes_on() {
    let s = setup();
    let frames = jpeg_frames(320, 240, 3);
    let mut middle = frames[1].clone();
    // The middle frame's SOF0 claims 65500x65500 pixels (a decompression bomb).
    let sof = middle.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    middle[sof + 5..sof + 9].copy_from_slice(&[0xff, 0xdc, 0xff, 0xdc]);
    let bytes = mjpeg(&[frames[0].clone(), middle, frames[2].clone()]);
    let o = stream(&s, "mjpeg:-", &["--every-frame"], Some(bytes));
    let sum = summary(&o, 3);
    assert_eq!(sum["frames_processed"], 2);
    assert_eq!(sum["frames_corrupt"], 1);
    let errors = error_lines(&o);
    assert_eq!(errors[0]["frame"], 1);
    let error = errors[0]["error"].as_str().unwrap();
    assert!(error.contains("65500x65500 pixels is outside"), "{error}");
}

#[test]
fn a_capture_command_that_stalls_is_killed_and_restarted() {
    let s = setup();
    let file = s.file("two.mjpeg", &mjpeg(&jpeg_frames(320, 240, 2)));
    // Two frames, then the camera hangs: no bytes, no exit.
    let cmd = format!("cmd:cat {}; exec sleep 600", file.display());
    let start = Instant::now();
    let o = stream(
        &s,
        &cmd,
        &[
            "--max-restarts",
            "1",
            "--stall-timeout",
            "0.5",
            "--every-frame",
        ],
        None,
    );
    let sum = summary(&o, 4);
    assert_eq!(sum["frames_processed"], 4);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        stderr.matches("capture command stalled").count(),
        2,
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn raw_rgb_frames_from_a_file_and_a_pipe() {
    let s = setup();
    let raw = raw_rgb(64, 48, 5, [250, 0, 0]);
    let file = s.file("red.rgb", &raw);
    let o = stream(
        &s,
        &format!("raw:64x48:rgb24:{}", file.display()),
        &[],
        None,
    );
    let sum = summary(&o, 5);
    assert_eq!(sum["frames_processed"], 5);
    for l in json_lines(&o).iter().filter(|l| l.get("top").is_some()) {
        assert_eq!(l["top"][0]["label"], "red");
    }
    // Through a pipe, with half a frame at the end: one truncated frame.
    let mut piped = raw.clone();
    piped.extend_from_slice(&raw[..64 * 48 * 3 / 2]);
    let o = stream(&s, "raw:64x48:rgb24:-", &[], Some(piped));
    let sum = summary(&o, 6);
    assert_eq!(sum["frames_corrupt"], 1);
}

fn solid(path: &Path, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(96, 64, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn the_trigger_switches_the_mock_pin_exactly_as_specified() {
    let s = setup();
    let dir = s.path("frames");
    std::fs::create_dir(&dir).unwrap();
    // r r r b b b b b b r r r  (names sort in this order)
    let colours = "rrrbbbbbbrrr";
    for (i, c) in colours.chars().enumerate() {
        let rgb = if c == 'r' {
            [240, 10, 10]
        } else {
            [10, 10, 240]
        };
        solid(&dir.join(format!("{i:02}.png")), rgb);
    }
    let o = stream(
        &s,
        &format!("dir:{}", dir.display()),
        &[
            "--trigger",
            "red:0.9",
            "--gpio",
            "mock",
            "--on-frames",
            "2",
            "--off-frames",
            "3",
        ],
        None,
    );
    summary(&o, 12);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let pins: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("gpio mock: pin "))
        .collect();
    // Low at start; high after frame 1 (second red); low after frame 5 (third blue); high
    // after frame 10; low when the stream ends.
    assert_eq!(pins, ["low", "high", "low", "high", "low"], "{stderr}");
    let names: Vec<String> = json_lines(&o)
        .iter()
        .filter_map(|l| l["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names.len(), 12);
    assert!(names.windows(2).all(|w| w[0] < w[1]));
}

/// Processes whose command line contains `needle` (read from /proc).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn sigterm_ends_a_live_stream_with_its_summary() {
    let s = setup();
    let frame = s.file("live-frame.jpg", &jpeg_frames(320, 240, 1)[0]);
    // A camera at about 20 frames per second that never ends by itself.
    let cmd = format!("cmd:while :; do cat {}; sleep 0.05; done", frame.display());
    let mut stream_cmd = bin();
    stream_cmd
        .arg("stream")
        .arg(&s.model)
        .args(["--source", &cmd, "--json"]);
    let what = describe(&stream_cmd);
    let mut child = stream_cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_in_group();
    let stderr = drain(child.stderr.take().unwrap());
    // Wait for the first result line, then ask the program to stop as systemd would.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let _ = tx.send(first);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        let _ = tx.send(rest);
    });
    let first = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            stop_group(&mut child);
            panic!("no result line from {what} within 60 s");
        }
    };
    assert!(first.contains("\"top\""), "{first}");
    // SAFETY: kill(2) on the child's pid, which is not reaped yet; no memory is touched.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let code = wait_within(&mut child, Duration::from_secs(30), &what, || {
        String::from_utf8_lossy(
            &stderr
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default(),
        )
        .into_owned()
    });
    assert_eq!(code.code(), Some(0));
    let rest = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("stdout ends");
    let last: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    let sum = &last["summary"];
    let n = |k: &str| sum[k].as_u64().unwrap();
    assert!(n("frames_processed") >= 1);
    assert_eq!(
        n("frames_read"),
        n("frames_processed") + n("frames_dropped") + n("frames_corrupt")
    );
    // The capture command is gone with it.
    std::thread::sleep(Duration::from_millis(300));
    let left = processes_with(&frame.display().to_string());
    assert!(left.is_empty(), "capture command left running: {left:?}");
}

#[test]
fn bad_sources_and_triggers_are_clear_errors() {
    let s = setup();
    let o = bin()
        .args([
            "stream",
            s.model.to_str().unwrap(),
            "--source",
            "tcp:1.2.3.4",
        ])
        .output_within(STREAM_DEADLINE);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown source kind `tcp`"));

    let o = stream(&s, "mjpeg:-", &["--stall-timeout=-1"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`-1` is not a number of seconds"));

    let o = stream(&s, "dir:/nonexistent/frames", &[], None);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/frames: not a directory"));

    let o = stream(
        &s,
        "mjpeg:-",
        &["--trigger", "purple", "--gpio", "mock"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no class `purple`"));

    // With or without the v4l2 feature, a camera that is not there is named.
    let o = stream(&s, "v4l2:/dev/video99", &[], None);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/dev/video99"));

    let o = stream(&s, "mjpeg:-", &["--trigger", "red"], None);
    assert_eq!(o.status.code(), Some(2), "--trigger needs --gpio");
}

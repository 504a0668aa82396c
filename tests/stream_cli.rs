//! `resnext-edge stream` end to end, with real parts: MJPEG and raw streams made by ffmpeg
//! (`apt-get install ffmpeg`; the tests fail without it), piped in, read from files, produced by
//! a capture command that dies and is restarted; corrupt frames in the middle; the GPIO trigger's
//! dry run; SIGTERM. Every test checks that each frame sent is accounted for:
//! processed + dropped + corrupt = frames sent.

mod common;

use common::{colour_model, json_lines, ScratchDir};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
}

/// Runs ffmpeg with `args` and returns its standard output.
fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg is needed for the stream tests (apt-get install ffmpeg)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// `frames` frames of ffmpeg's test pattern as MJPEG.
fn testsrc_mjpeg(size: &str, frames: usize) -> Vec<u8> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={size}:rate=30"),
        "-frames:v",
        &frames.to_string(),
        "-f",
        "mjpeg",
        "-",
    ])
}

/// Where each frame of an MJPEG stream written by ffmpeg starts (EOI followed by SOI).
fn frame_starts(mjpeg: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for i in 2..mjpeg.len().saturating_sub(1) {
        if mjpeg[i - 2..i] == [0xff, 0xd9] && mjpeg[i..i + 2] == [0xff, 0xd8] {
            starts.push(i);
        }
    }
    starts
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

fn stream(s: &Setup, source: &str, extra: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut child = bin()
        .arg("stream")
        .arg(&s.model)
        .args(["--source", source, "--json", "--top-k", "2"])
        .args(extra)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&bytes);
        });
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_ffmpeg_mjpeg_pipe_is_classified_and_every_frame_accounted_for() {
    let s = setup();
    // ffmpeg writes straight into the stream's standard input, as fast as it can.
    let mut ff = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x480:rate=30"])
        .args(["-frames:v", "90", "-f", "mjpeg", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg is needed for the stream tests (apt-get install ffmpeg)");
    let o = bin()
        .arg("stream")
        .arg(&s.model)
        .args(["--source", "mjpeg:-", "--json", "--stats-every", "0.2"])
        .stdin(ff.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(ff.wait().unwrap().success());
    let sum = summary(&o, 90);
    assert_eq!(sum["frames_corrupt"], 0);
    assert!(sum["frames_processed"].as_u64().unwrap() >= 1);
    let lines = json_lines(&o);
    // --top-k defaults to 5; the model has 3 classes.
    assert_eq!(lines[0]["top"].as_array().unwrap().len(), 3);
    // Frames are numbered in stream order, and results come in order.
    let frames: Vec<u64> = lines.iter().filter_map(|l| l["frame"].as_u64()).collect();
    assert!(frames.windows(2).all(|w| w[0] < w[1]), "{frames:?}");
    assert!(*frames.last().unwrap() < 90);
}

#[test]
fn a_corrupt_and_a_garbage_frame_in_the_middle_are_counted_and_skipped() {
    let s = setup();
    let clean = testsrc_mjpeg("320x240", 12);
    let starts = frame_starts(&clean);
    assert_eq!(starts.len(), 12);
    let frame = |i: usize| &clean[starts[i]..*starts.get(i + 1).unwrap_or(&clean.len())];
    let mut bytes = Vec::new();
    for i in 0..12 {
        match i {
            4 => bytes.extend_from_slice(&frame(i)[..frame(i).len() / 2]), // cut in half
            7 => {
                bytes.extend_from_slice(b"\xff\xd8\x12garbage"); // SOI, then nonsense
                bytes.extend_from_slice(frame(i));
            }
            9 => {
                bytes.extend_from_slice(b"noise between frames");
                bytes.extend_from_slice(frame(i));
            }
            _ => bytes.extend_from_slice(frame(i)),
        }
    }
    let file = s.path("broken.mjpeg");
    std::fs::write(&file, &bytes).unwrap();
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
    let clean = testsrc_mjpeg("320x240", 3);
    let starts = frame_starts(&clean);
    let file = s.path("three.mjpeg");
    std::fs::write(&file, &clean).unwrap();
    // Each run delivers two frames and dies in the middle of the third.
    let cut = starts[2] + (clean.len() - starts[2]) / 2;
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

    // A real capture program: ffmpeg as the camera, three short runs.
    let cmd = "cmd:ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc=size=320x240:rate=30 -frames:v 10 -f mjpeg -";
    let o = stream(&s, cmd, &["--max-restarts", "2"], None);
    let sum = summary(&o, 30);
    assert_eq!(sum["frames_corrupt"], 0);
}

#[test]
fn a_frame_claiming_a_huge_size_is_counted_corrupt_and_the_stream_goes_on() {
    let s = setup();
    let clean = testsrc_mjpeg("320x240", 3);
    let starts = frame_starts(&clean);
    let mut bytes = clean.clone();
    // The middle frame's SOF0 claims 65500x65500 pixels (a decompression bomb).
    let sof = starts[1]
        + bytes[starts[1]..]
            .windows(2)
            .position(|w| w == [0xff, 0xc0])
            .unwrap();
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xff, 0xdc, 0xff, 0xdc]);
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
    let file = s.path("two.mjpeg");
    std::fs::write(&file, testsrc_mjpeg("320x240", 2)).unwrap();
    // Two frames, then the camera hangs: no bytes, no exit.
    let cmd = format!("cmd:cat {}; exec sleep 600", file.display());
    let start = std::time::Instant::now();
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
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn raw_rgb_frames_from_ffmpeg() {
    let s = setup();
    let raw = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=64x48:rate=10",
        "-frames:v",
        "5",
        "-pix_fmt",
        "rgb24",
        "-f",
        "rawvideo",
        "-",
    ]);
    assert_eq!(raw.len(), 5 * 64 * 48 * 3);
    let file = s.path("red.rgb");
    std::fs::write(&file, &raw).unwrap();
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

#[test]
fn sigterm_ends_a_live_stream_with_its_summary() {
    let s = setup();
    let cmd = "cmd:ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc=size=320x240:rate=20 -f mjpeg -";
    let mut child = bin()
        .arg("stream")
        .arg(&s.model)
        .args(["--source", cmd, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    // Wait for the first result, then ask the program to stop as systemd would.
    let mut first = [0u8; 1];
    out.read_exact(&mut first).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(0));
    let text = String::from_utf8_lossy(&rest);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let sum = &last["summary"];
    let n = |k: &str| sum[k].as_u64().unwrap();
    assert!(n("frames_processed") >= 1);
    assert_eq!(
        n("frames_read"),
        n("frames_processed") + n("frames_dropped") + n("frames_corrupt")
    );
    // The capture command is gone with it.
    let ps = Command::new("sh")
        .args([
            "-c",
            "sleep 0.3; pgrep -f 'testsrc=size=320x240:rat[e]=20' || true",
        ])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "capture command left running");
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
        .output()
        .unwrap();
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

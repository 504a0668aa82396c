//! `cmd:COMMAND`: a capture program (`rpicam-vid ... -o -`, `gst-launch-1.0 ... ! fdsink`,
//! `ffmpeg ... -f mjpeg -`) run through `sh -c`, its standard output read as MJPEG.
//!
//! Cameras and their drivers fail: a USB camera is unplugged, a pipeline hits an error. When the
//! command exits, its last words (the last line it wrote on stderr) are logged and it is started
//! again after a back-off that doubles from 0.5 s up to 8 s and resets once a run delivers frames.
//! A frame cut off by the exit counts as corrupt; the stream goes on.
//!
//! A command that cannot run at all is not restarted for ever: when a run ends before writing a
//! single byte with the shell's "cannot execute" or "not found" status (126, 127), or
//! [`MAX_SILENT_RUNS`] runs in a row end without a byte, the source fails
//! ([`Captured::Failed`]) with the command's last message (`sh: 1: ffmpeg: not found`).
//!
//! A command can also hang without exiting (a camera that stops delivering, a network source
//! that stalls). A watchdog thread per run notes when bytes last arrived; after the stall
//! timeout (`--stall-timeout`, default 10 s) without any, it kills the command, which then
//! restarts like any other exit.

use super::mjpeg::MjpegSource;
use crate::stream::source::{Captured, FrameSource};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long a command may deliver no bytes before it is killed and restarted.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a `cmd:` source is kept alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restarts {
    /// How often the command is started again after it exits (`None`: for ever).
    pub max_restarts: Option<u32>,
    /// Kill (and restart) the command after this long without a byte (`None`: never).
    pub stall_timeout: Option<std::time::Duration>,
}

impl Default for Restarts {
    fn default() -> Self {
        Restarts {
            max_restarts: None,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
        }
    }
}

/// Runs in a row that end without writing a byte before the command is taken to be unable to
/// run.
pub const MAX_SILENT_RUNS: u32 = 3;
/// How long the end of a run waits for the command's last stderr line to be read.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// The command's standard output, noting when a read that is still waiting for bytes began
/// (milliseconds since `epoch`, plus one; 0 when no read is pending). Only a waiting read counts:
/// while the capture thread is away (waiting for inference to take a frame) the command may
/// block on a full pipe, which is not a stall.
struct Watched {
    inner: ChildStdout,
    epoch: Instant,
    waiting_since_ms: Arc<AtomicU64>,
    /// Set once a read returned bytes.
    got_bytes: Arc<AtomicBool>,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.waiting_since_ms.store(now, Ordering::SeqCst);
        let n = self.inner.read(buf);
        self.waiting_since_ms.store(0, Ordering::SeqCst);
        if matches!(n, Ok(k) if k > 0) {
            self.got_bytes.store(true, Ordering::Relaxed);
        }
        n
    }
}

/// A running (or restarting) capture command.
pub struct CommandSource {
    command: String,
    max_restarts: Option<u32>,
    restarts: u32,
    backoff: Duration,
    child: Arc<Mutex<Option<Child>>>,
    /// Set by the killer: no restart after that.
    stopped: Arc<AtomicBool>,
    stream: Option<MjpegSource<Watched>>,
    frames_this_run: u64,
    /// Whether the current run has written any byte.
    run_got_bytes: Arc<AtomicBool>,
    /// Runs in a row that ended without a byte.
    silent_runs: u32,
    last_stderr: Arc<Mutex<String>>,
    /// The thread that reads the current run's stderr.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    stall_timeout: Option<Duration>,
    /// Counts runs; a watchdog stops when the run it watches is over.
    run: Arc<AtomicU64>,
    /// Runs ended by the watchdog.
    stalls: Arc<AtomicU64>,
}

impl CommandSource {
    /// `max_restarts`: how many times the command is started again after it exits (`None`:
    /// for ever).
    pub fn new(command: &str, max_restarts: Option<u32>) -> Self {
        CommandSource {
            command: command.to_string(),
            max_restarts,
            restarts: 0,
            backoff: FIRST_BACKOFF,
            child: Arc::new(Mutex::new(None)),
            stopped: Arc::new(AtomicBool::new(false)),
            stream: None,
            frames_this_run: 0,
            run_got_bytes: Arc::new(AtomicBool::new(false)),
            silent_runs: 0,
            last_stderr: Arc::new(Mutex::new(String::new())),
            stderr_reader: None,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            run: Arc::new(AtomicU64::new(0)),
            stalls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Kill and restart the command after `timeout` without a byte (`None`: never).
    pub fn with_stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Runs the watchdog killed for delivering nothing.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// Watches run `run`: kills its command once no byte has come for `timeout`.
    fn spawn_watchdog(&self, timeout: Duration, epoch: Instant, waiting_since_ms: Arc<AtomicU64>) {
        let (child, run, stalls, stopped) = (
            self.child.clone(),
            self.run.clone(),
            self.stalls.clone(),
            self.stopped.clone(),
        );
        let this_run = run.load(Ordering::SeqCst);
        let tick = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
        std::thread::spawn(move || loop {
            std::thread::sleep(tick);
            if stopped.load(Ordering::SeqCst) || run.load(Ordering::SeqCst) != this_run {
                return;
            }
            let since = waiting_since_ms.load(Ordering::SeqCst);
            let idle = (epoch.elapsed().as_millis() as u64 + 1).saturating_sub(since);
            if since == 0 || idle < timeout.as_millis() as u64 {
                continue;
            }
            let mut slot = child.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under the lock: the run may have ended meanwhile.
            if run.load(Ordering::SeqCst) != this_run {
                return;
            }
            if slot.is_some() {
                log::warn!(
                    "capture command stalled: no bytes for {:.1} s; stopping it",
                    idle as f64 / 1000.0
                );
                stalls.fetch_add(1, Ordering::Relaxed);
                kill_group(&mut slot);
            }
            return;
        });
    }

    /// A handle that kills the running command (when the stream stops).
    pub fn killer(&self) -> impl Fn() + Send + Sync + 'static {
        let child = self.child.clone();
        let stopped = self.stopped.clone();
        move || {
            stopped.store(true, Ordering::SeqCst);
            kill_group(&mut child.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    fn start(&mut self) -> std::io::Result<()> {
        log::info!("starting capture command: {}", self.command);
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let last = self.last_stderr.clone();
        self.stderr_reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log::debug!("capture command: {line}");
                if !line.trim().is_empty() {
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = line;
                }
            }
        }));
        {
            let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock the killer takes: a command started while the stream stops
            // does not outlive it.
            if self.stopped.load(Ordering::SeqCst) {
                kill_group(&mut Some(child));
                return Err(std::io::Error::other("the stream has stopped"));
            }
            *slot = Some(child);
        }
        let epoch = Instant::now();
        let waiting_since_ms = Arc::new(AtomicU64::new(0));
        self.run.fetch_add(1, Ordering::SeqCst);
        if let Some(timeout) = self.stall_timeout {
            self.spawn_watchdog(timeout, epoch, waiting_since_ms.clone());
        }
        self.run_got_bytes = Arc::new(AtomicBool::new(false));
        let watched = Watched {
            inner: stdout,
            epoch,
            waiting_since_ms,
            got_bytes: self.run_got_bytes.clone(),
        };
        self.stream = Some(MjpegSource::new(watched, true));
        self.frames_this_run = 0;
        Ok(())
    }

    /// Reaps the command whose output ended and logs why it stopped. What is left of its
    /// process group (a stalled first stage of a pipeline whose last stage exited) is killed.
    /// Returns why the command cannot run, when this run shows that it cannot.
    fn reap(&mut self) -> Option<String> {
        self.stream = None;
        let mut child = {
            let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
            // Under the lock: this run's watchdog sees it is over before it could kill.
            self.run.fetch_add(1, Ordering::SeqCst);
            slot.take()
        };
        let status = kill_group(&mut child);
        // The group is gone, so stderr is at its end: let the reader take the last line (a
        // process that left the group could keep the pipe open, hence the bound).
        if let Some(reader) = self.stderr_reader.take() {
            let t0 = Instant::now();
            while !reader.is_finished() && t0.elapsed() < STDERR_GRACE {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let last = std::mem::take(&mut *self.last_stderr.lock().unwrap_or_else(|e| e.into_inner()));
        let code = match &status {
            Some(Ok(s)) => s.code(),
            _ => None,
        };
        let status = match status {
            Some(Ok(s)) => s.to_string(),
            Some(Err(e)) => format!("unknown status ({e})"),
            None => "killed".into(),
        };
        let said = if last.is_empty() {
            String::new()
        } else {
            format!("; its last message: {last}")
        };
        log::warn!(
            "capture command ended ({status}) after {} frames{said}",
            self.frames_this_run
        );
        if self.run_got_bytes.load(Ordering::Relaxed) || self.stopped.load(Ordering::SeqCst) {
            self.silent_runs = 0;
            return None;
        }
        self.silent_runs += 1;
        let why = if matches!(code, Some(126 | 127)) {
            format!("it exited ({status}) before writing anything")
        } else if self.silent_runs >= MAX_SILENT_RUNS {
            format!(
                "it ended {} times in a row without writing anything (last: {status})",
                self.silent_runs
            )
        } else {
            return None;
        };
        Some(format!(
            "capture command `{}` cannot run: {why}{said}",
            self.command
        ))
    }
}

impl FrameSource for CommandSource {
    fn next(&mut self) -> Captured {
        loop {
            if self.stream.is_none() {
                if let Err(e) = self.start() {
                    if self.stopped.load(Ordering::SeqCst) {
                        return Captured::End;
                    }
                    return Captured::Failed(format!(
                        "cannot start capture command `{}`: {e}",
                        self.command
                    ));
                }
            }
            let stream = self.stream.as_mut().expect("started above");
            match stream.next_split() {
                Captured::End => {
                    if let Some(why) = self.reap() {
                        return Captured::Failed(why);
                    }
                    if !self.wait_to_restart() {
                        return Captured::End;
                    }
                }
                c => {
                    if matches!(c, Captured::Frame { .. }) {
                        self.frames_this_run += 1;
                        self.backoff = FIRST_BACKOFF;
                    }
                    return c;
                }
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn stopper(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        Some(Box::new(self.killer()))
    }
}

impl CommandSource {
    /// Sleeps the back-off before a restart; false when no restart is left.
    fn wait_to_restart(&mut self) -> bool {
        if self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        if self.max_restarts.is_some_and(|m| self.restarts >= m) {
            log::info!(
                "capture command not restarted: {} restarts done",
                self.restarts
            );
            return false;
        }
        self.restarts += 1;
        log::warn!(
            "restarting the capture command in {:.1} s (restart {})",
            self.backoff.as_secs_f64(),
            self.restarts
        );
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        !self.stopped.load(Ordering::SeqCst)
    }
}

/// Ends a command started by [`CommandSource::start`] and reaps it, taking it out of `slot` (so
/// that its process group, whose id may be reused once reaped, is never signalled again). It
/// runs in its own process group (a pipeline, or `sh` with its child): the whole group gets
/// SIGTERM, then SIGKILL for members that ignore it. Returns the exit status of the shell.
fn kill_group(slot: &mut Option<Child>) -> Option<std::io::Result<std::process::ExitStatus>> {
    let mut c = slot.take()?;
    if let Ok(pgid) = i32::try_from(c.id()) {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory of
        // ours. The group leader is not reaped yet (it is waited below), so the id is ours.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    Some(c.wait())
}

impl Drop for CommandSource {
    fn drop(&mut self) {
        (self.killer())();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames until the end; a corrupt one fails the test.
    fn count_frames(src: &mut CommandSource) -> usize {
        let mut frames = 0;
        loop {
            match src.next() {
                Captured::Frame { .. } => frames += 1,
                Captured::Corrupt(w) | Captured::Failed(w) => panic!("{w}"),
                Captured::End => return frames,
            }
        }
    }

    /// Two valid minimal frames per run, then exit: with 2 restarts, six frames in all.
    #[test]
    fn restarts_the_command_when_it_exits_and_ends_after_max_restarts() {
        // printf with octal escapes: SOI, SOS header (length 3), one data byte, EOI.
        let frame = r"\377\330\377\332\000\003\001\042\377\331";
        let cmd = format!("printf '{frame}{frame}'; echo bye >&2; exit 3");
        let mut src = CommandSource::new(&cmd, Some(2));
        src.backoff = Duration::from_millis(1);
        assert_eq!(count_frames(&mut src), 6);
        assert_eq!(src.restarts, 2);
    }

    /// One frame, then silence: the watchdog kills the command after the timeout, it is
    /// restarted, and the stream goes on (ends here after one restart).
    #[test]
    fn a_command_that_stalls_is_killed_and_restarted() {
        let cmd = r"printf '\377\330\377\332\000\003\001\042\377\331'; exec sleep 600";
        let mut src =
            CommandSource::new(cmd, Some(1)).with_stall_timeout(Some(Duration::from_millis(300)));
        src.backoff = Duration::from_millis(1);
        let start = Instant::now();
        assert_eq!(count_frames(&mut src), 2);
        assert_eq!(src.stalls(), 2);
        assert_eq!(src.restarts, 1);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_frame_cut_by_the_exit_is_corrupt() {
        let cmd = r"printf '\377\330\377\332\000\003\001\042\377\331\377\330\377\332\000\003'";
        let mut src = CommandSource::new(cmd, Some(0));
        assert!(matches!(src.next(), Captured::Frame { .. }));
        assert!(matches!(src.next(), Captured::Corrupt(w) if w.contains("truncated")));
        assert!(matches!(src.next(), Captured::End));
    }

    /// The shell's 127 before any byte: the source fails at once with the shell's message,
    /// however many restarts are allowed.
    #[test]
    fn a_missing_program_fails_at_once_with_the_shells_message() {
        let mut src = CommandSource::new("exec /nonexistent/camera", None);
        src.backoff = Duration::from_millis(1);
        match src.next() {
            Captured::Failed(why) => {
                assert!(
                    why.contains("`exec /nonexistent/camera` cannot run"),
                    "{why}"
                );
                assert!(why.contains("127"), "{why}");
                assert!(why.contains("not found"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(src.restarts, 0);
    }

    /// Silent runs in a row fail the source; a run that writes resets the count. The runs are
    /// numbered through a file: runs 0 and 1 are silent, run 2 writes a frame, runs 3, 4 and 5
    /// are silent again, and the third of those fails the source.
    #[test]
    fn silent_runs_in_a_row_fail_the_source_and_a_run_with_bytes_resets_the_count() {
        let dir = crate::scratch_dir::ScratchDir::new().unwrap();
        let count = dir.path().join("runs");
        let cmd = format!(
            r"n=$(cat {f} 2>/dev/null || echo 0); echo $((n + 1)) > {f}; \
              if [ $n -eq 2 ]; then printf '\377\330\377\332\000\003\001\042\377\331'; fi; \
              echo run $n >&2; exit 1",
            f = count.display()
        );
        let mut src = CommandSource::new(&cmd, None);
        src.backoff = Duration::from_millis(1);
        assert!(matches!(src.next(), Captured::Frame { .. }));
        match src.next() {
            Captured::Failed(why) => {
                assert!(why.contains("3 times in a row"), "{why}");
                assert!(why.contains("exit status: 1"), "{why}");
                assert!(why.contains("its last message: run 5"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "6");
        assert_eq!(src.restarts, 5);
    }
}

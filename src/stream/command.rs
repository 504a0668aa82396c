//! `cmd:COMMAND`: a capture program (`rpicam-vid ... -o -`, `gst-launch-1.0 ... ! fdsink`,
//! `ffmpeg ... -f mjpeg -`) run through `sh -c`, its standard output read as MJPEG.
//!
//! Cameras and their drivers fail: a USB camera is unplugged, a pipeline hits an error. When the
//! command exits, its last words (the last line it wrote on stderr) are logged and it is started
//! again after a back-off that doubles from 0.5 s up to 8 s and resets once a run delivers frames.
//! A frame cut off by the exit counts as corrupt; the stream goes on.

use super::source::{Captured, FrameSource, MjpegSource};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// A running (or restarting) capture command.
pub struct CommandSource {
    command: String,
    max_restarts: Option<u32>,
    restarts: u32,
    backoff: Duration,
    child: Arc<Mutex<Option<Child>>>,
    /// Set by the killer: no restart after that.
    stopped: Arc<AtomicBool>,
    stream: Option<MjpegSource<ChildStdout>>,
    frames_this_run: u64,
    last_stderr: Arc<Mutex<String>>,
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
            last_stderr: Arc::new(Mutex::new(String::new())),
        }
    }

    /// A handle that kills the running command (when the stream stops).
    pub fn killer(&self) -> impl Fn() + Send + Sync + 'static {
        let child = self.child.clone();
        let stopped = self.stopped.clone();
        move || {
            stopped.store(true, Ordering::SeqCst);
            if let Some(c) = child.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                kill_group(c);
            }
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
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log::debug!("capture command: {line}");
                if !line.trim().is_empty() {
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = line;
                }
            }
        });
        {
            let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock the killer takes: a command started while the stream stops
            // does not outlive it.
            if self.stopped.load(Ordering::SeqCst) {
                kill_group(&mut child);
                return Err(std::io::Error::other("the stream has stopped"));
            }
            *slot = Some(child);
        }
        self.stream = Some(MjpegSource::new(stdout, true));
        self.frames_this_run = 0;
        Ok(())
    }

    /// Reaps the exited command and logs why it stopped.
    fn reap(&mut self) {
        self.stream = None;
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        let status = child.map(|mut c| c.wait());
        let last = std::mem::take(&mut *self.last_stderr.lock().unwrap_or_else(|e| e.into_inner()));
        let status = match status {
            Some(Ok(s)) => s.to_string(),
            Some(Err(e)) => format!("unknown status ({e})"),
            None => "not running".into(),
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
    }
}

impl FrameSource for CommandSource {
    fn next(&mut self) -> Captured {
        loop {
            if self.stream.is_none() {
                if let Err(e) = self.start() {
                    log::error!("cannot start capture command `{}`: {e}", self.command);
                    self.stream = None;
                    if !self.wait_to_restart() {
                        return Captured::End;
                    }
                    continue;
                }
            }
            let stream = self.stream.as_mut().expect("started above");
            match stream.next_split() {
                Captured::End => {
                    self.reap();
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

/// Ends a command started by [`CommandSource::start`] and reaps it. It runs in its own process
/// group (a pipeline, or `sh` with its child): the whole group is signalled, not only the shell.
fn kill_group(c: &mut Child) {
    if let Ok(pgid) = i32::try_from(c.id()) {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory of
        // ours.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for CommandSource {
    fn drop(&mut self) {
        (self.killer())();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two valid minimal frames per run, then exit: with 2 restarts, six frames in all.
    #[test]
    fn restarts_the_command_when_it_exits_and_ends_after_max_restarts() {
        // printf with octal escapes: SOI, SOS header (length 3), one data byte, EOI.
        let frame = r"\377\330\377\332\000\003\001\042\377\331";
        let cmd = format!("printf '{frame}{frame}'; echo bye >&2; exit 3");
        let mut src = CommandSource::new(&cmd, Some(2));
        src.backoff = Duration::from_millis(1);
        let mut frames = 0;
        loop {
            match src.next() {
                Captured::Frame { .. } => frames += 1,
                Captured::Corrupt(w) => panic!("{w}"),
                Captured::End => break,
            }
        }
        assert_eq!(frames, 6);
        assert_eq!(src.restarts, 2);
    }

    #[test]
    fn a_frame_cut_by_the_exit_is_corrupt_and_a_missing_program_ends_after_the_restarts() {
        let cmd = r"printf '\377\330\377\332\000\003\001\042\377\331\377\330\377\332\000\003'";
        let mut src = CommandSource::new(cmd, Some(0));
        assert!(matches!(src.next(), Captured::Frame { .. }));
        assert!(matches!(src.next(), Captured::Corrupt(w) if w.contains("truncated")));
        assert!(matches!(src.next(), Captured::End));

        let mut src = CommandSource::new("exec /nonexistent/camera", Some(1));
        src.backoff = Duration::from_millis(1);
        assert!(matches!(src.next(), Captured::End));
        assert_eq!(src.restarts, 1);
    }
}

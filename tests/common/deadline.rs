//! Child processes with a deadline, so that no test can hang: a program that does not end in
//! time (a stream waiting for a camera that never comes, a Python peer stuck on its venv) is
//! stopped with its whole process group, SIGTERM first and SIGKILL two seconds later, and the
//! test fails naming what it waited for and what the program had written to stderr.
//!
//! Shared by the runtime's and the quantizer's integration tests (`#[path]`).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What any one program of the tests may take, in the slowest build on the slowest machine.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// `Command::output` and `Command::status` with a deadline.
pub trait Deadline {
    /// Runs to the end with standard input closed, capturing stdout and stderr; panics if the
    /// program is still running after `limit` (having stopped it).
    fn output_within(&mut self, limit: Duration) -> Output;
    /// As [`Deadline::output_within`], but stdout and stderr are inherited.
    fn status_within(&mut self, limit: Duration) -> ExitStatus;
    /// Starts the program in a process group of its own, so that [`stop_group`] ends it with
    /// whatever it started.
    fn spawn_in_group(&mut self) -> Child;
}

impl Deadline for Command {
    fn output_within(&mut self, limit: Duration) -> Output {
        let what = describe(self);
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_in_group();
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        let status = wait_within(&mut child, limit, &what, || {
            stderr_so_far(&stderr, Duration::from_secs(1))
        });
        // The pipes end with the program, unless something it started outside its group
        // still holds them.
        let rest = |rx: mpsc::Receiver<Vec<u8>>, name: &str| {
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| {
                    panic!("{what} ended, but its {name} stayed open for 10 s more")
                })
        };
        Output {
            status,
            stdout: rest(stdout, "stdout"),
            stderr: rest(stderr, "stderr"),
        }
    }

    fn status_within(&mut self, limit: Duration) -> ExitStatus {
        let what = describe(self);
        let mut child = self.stdin(Stdio::null()).spawn_in_group();
        wait_within(&mut child, limit, &what, String::new)
    }

    fn spawn_in_group(&mut self) -> Child {
        let what = describe(self);
        self.process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
    }
}

/// Waits for `child`; past `limit` stops its group and panics with `what` and `said()`.
pub fn wait_within(
    child: &mut Child,
    limit: Duration,
    what: &str,
    said: impl FnOnce() -> String,
) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return status;
        }
        if start.elapsed() >= limit {
            stop_group(child);
            panic!(
                "{what} was still running after {:.0} s and was killed; its stderr so far:\n{}",
                limit.as_secs_f64(),
                said()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a child started by [`Deadline::spawn_in_group`] and everything in its group: SIGTERM,
/// then SIGKILL if it is still there two seconds later.
pub fn stop_group(child: &mut Child) {
    let group = child.id() as i32;
    // SAFETY: kill(2) with a negative pid signals the process group `group`, which the child
    // leads (it was started with process_group(0) and is not reaped yet); no memory is touched.
    unsafe { libc::kill(-group, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; the group may be empty by now, which kill(2) reports as an error.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
}

/// Reads a pipe to its end on a thread of its own; the bytes arrive on the channel.
pub fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// What a drained stderr holds once its writer is gone (or a note that it is still open).
fn stderr_so_far(rx: &mpsc::Receiver<Vec<u8>>, wait: Duration) -> String {
    match rx.recv_timeout(wait) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => "(still held open by another process)".into(),
    }
}

/// The program and its arguments, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = format!("`{}", cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s.push('`');
    s
}

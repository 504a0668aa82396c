//! The worker threads that share a layer's work, started once and kept for the life of the
//! process: a ResNeXt inference runs some fifty layers in a few tens of milliseconds, and
//! spawning threads for each (tens of microseconds apiece, more on a small ARM core) would
//! cost a good part of what the second core gains.
//!
//! [`for_each`] hands out task indices `0..tasks` to the workers and the calling thread, and
//! returns when every task has run. Between jobs a worker spins for a short while (the next
//! layer usually follows within microseconds), then sleeps on a condition variable; while an
//! inference holds a [`hot`] guard, workers (and a caller waiting for them) do not sleep at
//! all: a layer that follows a serial step longer than the spin (the input quantization, the
//! classifier) would otherwise wait for a sleeping worker to wake, which in a virtual machine
//! can take longer than the layer (2 threads on resnext50, Intel Xeon: best median 13.9 ms
//! with a 5 ms spin against 19.0 ms without). A caller that finds the pool busy (another model running on another thread)
//! runs its tasks itself.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker (or a waiting caller) spins before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// Live [`hot`] guards.
static HOT: AtomicUsize = AtomicUsize::new(0);

/// While the guard lives, idle workers spin instead of sleeping: held for one inference.
pub struct Hot(());

/// Keeps the workers awake until the guard is dropped.
pub fn hot() -> Hot {
    HOT.fetch_add(1, Ordering::Relaxed);
    Hot(())
}

impl Drop for Hot {
    fn drop(&mut self) {
        HOT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a waiter that started spinning at `start` should go on spinning.
fn keep_spinning(start: Instant) -> bool {
    HOT.load(Ordering::Relaxed) > 0 || start.elapsed() < SPIN
}

/// One call of [`for_each`].
struct Job {
    /// The caller's closure; only called for indices below `tasks`, all of which finish before
    /// [`for_each`] returns, so it is never called after the closure is gone.
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    next: AtomicUsize,
    left: AtomicUsize,
    panicked: AtomicBool,
    /// The first panic's payload, raised again by the caller.
    payload: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `f` points to a `Sync` closure that outlives every call made through it (see
// `Job::f`); the other fields are atomics.
unsafe impl Send for Job {}
// SAFETY: as above.
unsafe impl Sync for Job {}

impl Job {
    /// Runs tasks until none is left to take.
    fn work(&self, shared: &Shared) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            // SAFETY: i < tasks, so the job is not finished and the caller of `for_each` is still
            // waiting with its closure alive.
            let f = unsafe { &*self.f };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(i))) {
                self.panicked.store(true, Ordering::Relaxed);
                let mut first = self.payload.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(payload);
            }
            if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                // The last task: wake the caller if it sleeps (under the lock, so that a caller
                // between its check and its wait cannot miss it).
                let _guard = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                shared.done.notify_all();
            }
        }
    }
}

struct Shared {
    state: Mutex<Option<Arc<Job>>>,
    /// Bumped for each job, so that spinning workers see one without the lock.
    generation: AtomicUsize,
    wake: Condvar,
    done: Condvar,
}

struct Pool {
    shared: Arc<Shared>,
    workers: usize,
    /// Held by the one caller whose job the workers serve.
    busy: Mutex<()>,
}

fn worker(shared: Arc<Shared>) {
    let mut seen = 0;
    loop {
        let start = Instant::now();
        while shared.generation.load(Ordering::Acquire) == seen && keep_spinning(start) {
            std::hint::spin_loop();
        }
        let job = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            while shared.generation.load(Ordering::Acquire) == seen {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            seen = shared.generation.load(Ordering::Acquire);
            state.clone()
        };
        if let Some(job) = job {
            job.work(&shared);
        }
    }
}

fn pool(workers: usize) -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let shared = Arc::new(Shared {
            state: Mutex::new(None),
            generation: AtomicUsize::new(0),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let mut started = 0;
        for i in 0..workers {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("resnext-edge-{}", i + 1))
                .spawn(move || worker(s));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    log::warn!("cannot start worker thread: {e}; using {started}");
                    break;
                }
            }
        }
        Pool {
            shared,
            workers: started,
            busy: Mutex::new(()),
        }
    })
}

/// Runs `f(i)` for every `i` in `0..tasks`, on up to `threads` threads (the caller's included),
/// and returns when all have run. The pool is started on first use with `threads - 1` workers.
/// A panic in a task is raised again here once every task has finished.
pub fn for_each(tasks: usize, threads: usize, f: &(dyn Fn(usize) + Sync)) {
    if tasks <= 1 || threads <= 1 {
        return run_inline(tasks, f);
    }
    let pool = pool(threads - 1);
    let busy = match pool.busy.try_lock() {
        Ok(guard) => guard,
        // Poisoned only by a panic raised again below, after the job had finished.
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return run_inline(tasks, f),
    };
    if pool.workers == 0 {
        drop(busy);
        return run_inline(tasks, f);
    }
    let f: *const (dyn Fn(usize) + Sync + '_) = f;
    // SAFETY: lifetime erasure: the pointer is only used for tasks below `tasks`, and this
    // function does not return before every one of them has finished.
    let f: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
    let job = Arc::new(Job {
        f,
        tasks,
        next: AtomicUsize::new(0),
        left: AtomicUsize::new(tasks),
        panicked: AtomicBool::new(false),
        payload: Mutex::new(None),
    });
    let shared = &pool.shared;
    {
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = Some(Arc::clone(&job));
        shared.generation.fetch_add(1, Ordering::Release);
        shared.wake.notify_all();
    }
    job.work(shared);
    let start = Instant::now();
    while job.left.load(Ordering::Acquire) != 0 && keep_spinning(start) {
        std::hint::spin_loop();
    }
    {
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while job.left.load(Ordering::Acquire) != 0 {
            state = shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        *state = None;
    }
    drop(busy);
    if job.panicked.load(Ordering::Relaxed) {
        let payload = job.payload.lock().unwrap_or_else(|e| e.into_inner()).take();
        resume_unwind(payload.unwrap_or_else(|| Box::new("a worker thread's task panicked")));
    }
}

/// Every task on the calling thread; as on the pool, a panic is raised again once all have run.
fn run_inline(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let mut first = None;
    for i in 0..tasks {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            first.get_or_insert(payload);
        }
    }
    if let Some(payload) = first {
        resume_unwind(payload);
    }
}

/// Calls `f(i, chunk)` for the `len`-byte chunks of `out`, on the worker pool.
pub fn in_chunks<T: Send>(
    out: &mut [T],
    len: usize,
    threads: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let chunks: Vec<Mutex<Option<&mut [T]>>> =
        out.chunks_mut(len).map(|c| Mutex::new(Some(c))).collect();
    crate::workers::for_each(chunks.len(), threads, &|i| {
        let chunk = chunks[i].lock().ok().and_then(|mut c| c.take());
        if let Some(chunk) = chunk {
            f(i, chunk)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_whatever_the_threads() {
        for threads in [1, 2, 3, 8] {
            for tasks in [0, 1, 2, 5, 64] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                for_each(tasks, threads, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn callers_on_several_threads_each_get_their_tasks_done() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..50 {
                        let sum = AtomicUsize::new(0);
                        for_each(10, 2, &|i| {
                            sum.fetch_add(i + t + round, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 45 + 10 * (t + round));
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_task_on_the_caller_alone_also_lets_the_others_run() {
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            for_each(8, 1, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                if i == 3 {
                    panic!("task 3");
                }
            })
        }));
        assert_eq!(
            r.unwrap_err().downcast_ref::<&str>().copied(),
            Some("task 3")
        );
        assert_eq!(ran.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_after_the_others_ran() {
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            for_each(8, 2, &|i| {
                ran.fetch_add(1, Ordering::Relaxed);
                if i == 3 {
                    panic!("task 3");
                }
            })
        }));
        let message = r.unwrap_err().downcast_ref::<&str>().copied();
        assert_eq!(message, Some("task 3"));
        assert_eq!(ran.load(Ordering::Relaxed), 8);
        // The pool still serves later jobs on its workers (other tests may hold it for a
        // moment, and then a job runs on its caller alone: try a few times).
        let parallel = (0..200).any(|_| {
            let threads_seen = Mutex::new(std::collections::HashSet::new());
            for_each(16, 2, &|_| {
                let me = std::thread::current().id();
                threads_seen.lock().unwrap().insert(me);
                std::thread::sleep(Duration::from_millis(1));
            });
            let n = threads_seen.lock().unwrap().len();
            n >= 2
        });
        assert!(parallel, "no job ran on a worker after a task panicked");
    }
}

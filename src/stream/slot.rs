//! The hand-over between the capture thread and inference: one slot holding the newest frame.
//!
//! A camera delivers frames at its own pace; if inference is slower, queueing frames would make
//! every answer later than the last one. So capture overwrites the slot and the overwritten frame
//! counts as dropped: inference always takes the newest frame. A source that is not live (a
//! folder, a file) waits for the slot to be free instead, so that every frame is classified.
//! The slot also keeps the frame accounting, so that read = processed + dropped + corrupt holds
//! whatever the timing.

use super::frame::Frame;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Frame counts of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Frames the source delivered, corrupt ones included.
    pub frames_read: u64,
    /// Frames classified.
    pub frames_processed: u64,
    /// Frames overwritten by a newer one before inference took them (or left at the end).
    pub frames_dropped: u64,
    /// Frames that could not be split out of the stream or decoded.
    pub frames_corrupt: u64,
}

/// What [`FrameSlot::take`] found.
#[derive(Debug)]
pub enum Take {
    Frame(Frame),
    /// Nothing arrived within the timeout.
    Idle,
    /// The source has ended and the slot is empty.
    Ended,
}

#[derive(Default)]
struct State {
    frame: Option<Frame>,
    ended: bool,
    stopped: bool,
    counts: Counts,
}

/// The newest-frame slot, shared by the capture thread and inference.
#[derive(Default)]
pub struct FrameSlot {
    state: Mutex<State>,
    changed: Condvar,
}

impl FrameSlot {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counts half-updated: every update is one statement.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a frame over. `wait_for_room`: block until inference has taken the previous frame
    /// (nothing is dropped); otherwise replace it (it counts as dropped). Returns false once
    /// inference has stopped: the capture thread should end.
    pub fn put(&self, frame: Frame, wait_for_room: bool) -> bool {
        let mut s = self.lock();
        if wait_for_room {
            while s.frame.is_some() && !s.stopped {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        if s.stopped {
            return false;
        }
        s.counts.frames_read += 1;
        if s.frame.replace(frame).is_some() {
            s.counts.frames_dropped += 1;
        }
        self.changed.notify_all();
        true
    }

    /// A frame the source read but could not deliver (broken stream syntax, unreadable file).
    pub fn corrupt_read(&self) {
        let mut s = self.lock();
        s.counts.frames_read += 1;
        s.counts.frames_corrupt += 1;
    }

    /// A frame taken by inference that turned out not to decode.
    pub fn corrupt_taken(&self) {
        self.lock().counts.frames_corrupt += 1;
    }

    /// A frame taken by inference and classified.
    pub fn processed(&self) {
        self.lock().counts.frames_processed += 1;
    }

    /// The source has no more frames.
    pub fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    /// Inference stops taking frames: a frame still in the slot counts as dropped, and a
    /// waiting capture thread is released. Returns the final counts.
    pub fn stop(&self) -> Counts {
        let mut s = self.lock();
        s.stopped = true;
        if s.frame.take().is_some() {
            s.counts.frames_dropped += 1;
        }
        self.changed.notify_all();
        s.counts
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// Takes the newest frame, waiting at most `timeout` for one.
    pub fn take(&self, timeout: Duration) -> Take {
        let mut s = self.lock();
        if s.frame.is_none() && !s.ended {
            s = self
                .changed
                .wait_timeout_while(s, timeout, |s| s.frame.is_none() && !s.ended)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match s.frame.take() {
            Some(f) => {
                self.changed.notify_all();
                Take::Frame(f)
            }
            None if s.ended => Take::Ended,
            None => Take::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::frame::FrameData;
    use std::sync::Arc;
    use std::time::Instant;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            captured: Instant::now(),
            name: None,
            data: FrameData::Encoded(vec![seq as u8]),
        }
    }

    #[test]
    fn a_newer_frame_replaces_an_untaken_one_and_counts_a_drop() {
        let slot = FrameSlot::new();
        assert!(slot.put(frame(0), false));
        assert!(slot.put(frame(1), false));
        slot.corrupt_read();
        match slot.take(Duration::ZERO) {
            Take::Frame(f) => assert_eq!(f.seq, 1),
            other => panic!("{other:?}"),
        }
        slot.processed();
        assert!(matches!(slot.take(Duration::from_millis(1)), Take::Idle));
        slot.end();
        assert!(matches!(slot.take(Duration::from_secs(5)), Take::Ended));
        let c = slot.stop();
        assert_eq!(
            c,
            Counts {
                frames_read: 3,
                frames_processed: 1,
                frames_dropped: 1,
                frames_corrupt: 1
            }
        );
    }

    #[test]
    fn waiting_for_room_loses_nothing_and_stop_releases_the_producer() {
        let slot = Arc::new(FrameSlot::new());
        let producer = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                for i in 0..50 {
                    if !slot.put(frame(i), true) {
                        break;
                    }
                    sent += 1;
                }
                slot.end();
                sent
            })
        };
        let mut seen = Vec::new();
        loop {
            match slot.take(Duration::from_secs(10)) {
                Take::Frame(f) => {
                    seen.push(f.seq);
                    slot.processed();
                }
                Take::Idle => panic!("producer stalled"),
                Take::Ended => break,
            }
        }
        assert_eq!(producer.join().unwrap(), 50);
        assert_eq!(seen, (0..50).collect::<Vec<_>>());

        // A producer blocked on a full slot is released by stop(), and its frame is dropped.
        let slot = Arc::new(FrameSlot::new());
        slot.put(frame(0), true);
        let blocked = {
            let slot = slot.clone();
            std::thread::spawn(move || slot.put(frame(1), true))
        };
        std::thread::sleep(Duration::from_millis(20));
        let c = slot.stop();
        assert!(!blocked.join().unwrap());
        assert_eq!((c.frames_read, c.frames_dropped), (1, 1));
    }
}

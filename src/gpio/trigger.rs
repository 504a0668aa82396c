//! The watch-for-a-class trigger: a pin that goes high when a class has been seen for N
//! consecutive frames and low again after M consecutive frames without it. The hysteresis keeps
//! one misclassified frame from flickering a relay. Generic over
//! [`embedded_hal::digital::OutputPin`], so the same logic drives a Linux GPIO line, the logging
//! pin of a dry run, or a mock in tests.

use crate::topk::Prediction;
use embedded_hal::digital::OutputPin;

/// `--trigger LABEL[:MIN_SCORE]` as given (the label is resolved against the model's labels).
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerSpec {
    pub label: String,
    pub min_score: f32,
}

/// The score a frame's top-1 needs when `--trigger` names none.
pub const DEFAULT_MIN_SCORE: f32 = 0.5;

impl std::str::FromStr for TriggerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // Labels may contain ':' in principle; a suffix counts as a score only if it parses.
        if let Some((label, score)) = s.rsplit_once(':') {
            if let Ok(min_score) = score.parse::<f32>() {
                if !(0.0..=1.0).contains(&min_score) {
                    return Err(format!("`{s}`: the minimum score must be within 0..1"));
                }
                if label.is_empty() {
                    return Err(format!("`{s}`: no label before the score"));
                }
                return Ok(TriggerSpec {
                    label: label.to_string(),
                    min_score,
                });
            }
        }
        if s.is_empty() {
            return Err("empty label".into());
        }
        Ok(TriggerSpec {
            label: s.to_string(),
            min_score: DEFAULT_MIN_SCORE,
        })
    }
}

impl TriggerSpec {
    /// The class index the label names: a label (case-insensitive, or the first comma-separated
    /// name of an ImageNet label such as `tabby` for `tabby, tabby cat`) or a class number.
    pub fn resolve(&self, labels: &[String]) -> Result<usize, String> {
        let want = self.label.trim();
        let found = labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(want))
            .or_else(|| {
                labels.iter().position(|l| {
                    l.split(',')
                        .next()
                        .is_some_and(|first| first.trim().eq_ignore_ascii_case(want))
                })
            })
            .or_else(|| want.parse::<usize>().ok().filter(|&i| i < labels.len()));
        found.ok_or_else(|| {
            let lower = want.to_lowercase();
            let close: Vec<&str> = labels
                .iter()
                .filter(|l| l.to_lowercase().contains(&lower))
                .take(5)
                .map(String::as_str)
                .collect();
            if close.is_empty() {
                format!(
                    "the model has no class `{want}` ({} classes, e.g. `{}`)",
                    labels.len(),
                    labels.first().map(String::as_str).unwrap_or("")
                )
            } else {
                format!(
                    "the model has no class `{want}`; did you mean one of: {}",
                    close.join(" | ")
                )
            }
        })
    }
}

/// A pin driven by a class's presence, with hysteresis.
pub struct Trigger<P> {
    pin: P,
    class: usize,
    min_score: f32,
    on_frames: u32,
    off_frames: u32,
    hits: u32,
    misses: u32,
    high: bool,
}

impl<P: OutputPin> Trigger<P> {
    /// Drives the pin low at once (a known state), then waits for `on_frames` consecutive
    /// frames whose top-1 is `class` with at least `min_score` to set it high, and for
    /// `off_frames` consecutive frames without to set it low again. Both counts are at least 1.
    pub fn new(
        mut pin: P,
        class: usize,
        min_score: f32,
        on_frames: u32,
        off_frames: u32,
    ) -> Result<Self, P::Error> {
        pin.set_low()?;
        Ok(Trigger {
            pin,
            class,
            min_score,
            on_frames: on_frames.max(1),
            off_frames: off_frames.max(1),
            hits: 0,
            misses: 0,
            high: false,
        })
    }

    pub fn is_high(&self) -> bool {
        self.high
    }

    /// One classified frame (its best class). Returns the new pin level when it changed.
    pub fn observe(&mut self, top1: Option<&Prediction>) -> Result<Option<bool>, P::Error> {
        let hit = top1.is_some_and(|p| p.index == self.class && p.score >= self.min_score);
        if hit {
            self.misses = 0;
            self.hits = self.hits.saturating_add(1);
            if !self.high && self.hits >= self.on_frames {
                self.pin.set_high()?;
                self.high = true;
                return Ok(Some(true));
            }
        } else {
            self.hits = 0;
            self.misses = self.misses.saturating_add(1);
            if self.high && self.misses >= self.off_frames {
                self.pin.set_low()?;
                self.high = false;
                return Ok(Some(false));
            }
        }
        Ok(None)
    }

    /// The stream is over: the pin goes low if it is high, and is handed back.
    pub fn finish(mut self) -> Result<P, P::Error> {
        if self.high {
            self.pin.set_low()?;
        }
        Ok(self.pin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    fn p(index: usize, score: f32) -> Prediction {
        Prediction {
            index,
            label: format!("class{index}"),
            score,
        }
    }

    /// Class 7 watched, 0.6 minimum, 3 frames on, 2 frames off. The script mixes hits, a
    /// low-score frame of the right class, other classes, a missing result and a short gap.
    #[test]
    fn transitions_follow_the_hysteresis_exactly() {
        let pin = Mock::new(&[
            Transaction::set(State::Low),  // new(): known state
            Transaction::set(State::High), // after frame 5 (third hit in a row)
            Transaction::set(State::Low),  // after frame 10 (second miss in a row)
            Transaction::set(State::High), // after frame 14
            Transaction::set(State::Low),  // finish()
        ]);
        let mut t = Trigger::new(pin, 7, 0.6, 3, 2).unwrap();
        let script: [(Option<Prediction>, Option<bool>); 15] = [
            (Some(p(7, 0.9)), None),       // 0: hit 1
            (Some(p(7, 0.9)), None),       // 1: hit 2
            (Some(p(7, 0.5)), None),       // 2: score too low: the run restarts
            (Some(p(7, 0.6)), None),       // 3: hit 1 (the minimum score is inclusive)
            (Some(p(7, 0.99)), None),      // 4: hit 2
            (Some(p(7, 0.7)), Some(true)), // 5: hit 3: high
            (Some(p(7, 0.7)), None),       // 6: stays high
            (Some(p(3, 0.9)), None),       // 7: miss 1
            (Some(p(7, 0.9)), None),       // 8: a hit restarts the miss run
            (Some(p(3, 0.9)), None),       // 9: miss 1
            (None, Some(false)),           // 10: no result is a miss: miss 2, low
            (Some(p(2, 0.9)), None),       // 11: stays low
            (Some(p(7, 0.9)), None),       // 12: hit 1
            (Some(p(7, 0.9)), None),       // 13: hit 2
            (Some(p(7, 0.9)), Some(true)), // 14: hit 3: high
        ];
        let mut levels = Vec::new();
        for (i, (top1, want)) in script.iter().enumerate() {
            let got = t.observe(top1.as_ref()).unwrap();
            assert_eq!(got, *want, "frame {i}");
            levels.push(t.is_high());
        }
        assert_eq!(
            levels,
            [
                false, false, false, false, false, true, true, true, true, true, false, false,
                false, false, true
            ]
        );
        let mut pin = t.finish().unwrap();
        pin.done();
    }

    #[test]
    fn one_frame_thresholds_and_a_failing_pin() {
        use embedded_hal_mock::eh1::MockError;
        let pin = Mock::new(&[
            Transaction::set(State::Low),
            Transaction::set(State::High)
                .with_error(MockError::Io(std::io::ErrorKind::NotConnected)),
        ]);
        let mut t = Trigger::new(pin, 1, 0.0, 0, 0).unwrap();
        assert!(t.observe(Some(&p(1, 0.1))).is_err());
        assert!(!t.is_high(), "a failed write leaves the level unchanged");
        let mut pin = t.finish().unwrap();
        pin.done();
    }

    #[test]
    fn trigger_spec_parses_and_resolves_labels() {
        let labels: Vec<String> = ["tench, Tinca tinca", "tabby, tabby cat", "coffee"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s: TriggerSpec = "coffee".parse().unwrap();
        assert_eq!(s.min_score, DEFAULT_MIN_SCORE);
        assert_eq!(s.resolve(&labels), Ok(2));
        let s: TriggerSpec = "Tabby:0.8".parse().unwrap();
        assert_eq!((s.label.as_str(), s.min_score), ("Tabby", 0.8));
        assert_eq!(s.resolve(&labels), Ok(1));
        assert_eq!(
            "tabby, tabby cat"
                .parse::<TriggerSpec>()
                .unwrap()
                .resolve(&labels),
            Ok(1)
        );
        assert_eq!("0".parse::<TriggerSpec>().unwrap().resolve(&labels), Ok(0));
        let e = "tab"
            .parse::<TriggerSpec>()
            .unwrap()
            .resolve(&labels)
            .unwrap_err();
        assert!(
            e.contains("did you mean") && e.contains("tabby, tabby cat"),
            "{e}"
        );
        assert!("cat:1.5".parse::<TriggerSpec>().is_err());
        assert!(":0.5".parse::<TriggerSpec>().is_err());
    }
}

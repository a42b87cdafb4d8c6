//! Turning a stream of per-frame probabilities into events: a moving average over the last frames, and a
//! threshold with hysteresis so an event fires once when a label becomes likely, not on every frame.

use std::collections::VecDeque;

/// Mean probability per label over the last `window` frames.
#[derive(Debug, Clone)]
pub struct Smoother {
    window: usize,
    history: VecDeque<Vec<f32>>,
}

impl Smoother {
    /// A smoother over the last `window` frames (a window of 0 is treated as 1: no smoothing).
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            history: VecDeque::with_capacity(window.max(1)),
        }
    }

    /// The window length in frames.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Whether a whole window of frames has been seen.
    pub fn is_full(&self) -> bool {
        self.history.len() == self.window
    }

    /// Adds one frame's probabilities and returns the mean per label over the window so far.
    pub fn push(&mut self, probabilities: &[f32]) -> Vec<f32> {
        if self.history.len() == self.window {
            self.history.pop_front();
        }
        self.history.push_back(probabilities.to_vec());
        self.mean()
    }

    /// The mean per label over the window so far (empty before the first frame).
    pub fn mean(&self) -> Vec<f32> {
        let mut mean = vec![0f32; self.history.back().map_or(0, Vec::len)];
        for frame in &self.history {
            for (m, p) in mean.iter_mut().zip(frame) {
                *m += p;
            }
        }
        let n = self.history.len().max(1) as f32;
        mean.iter_mut().for_each(|m| *m /= n);
        mean
    }
}

/// A change of event state for one label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The label's smoothed score rose above the threshold: the event fires and the label becomes active.
    Fired {
        /// Label index.
        label: usize,
        /// Smoothed score that crossed the threshold.
        score: f32,
    },
    /// The label's smoothed score fell below threshold − hysteresis: it is no longer active and re-armed.
    Cleared {
        /// Label index.
        label: usize,
        /// Smoothed score that fell below the re-arm level.
        score: f32,
    },
}

/// Per-label threshold with hysteresis over smoothed scores.
#[derive(Debug, Clone)]
pub struct EventTrigger {
    threshold: f32,
    rearm_below: f32,
    active: Vec<bool>,
}

impl EventTrigger {
    /// Fires a label when its smoothed score reaches `threshold`, re-arms it when it falls below
    /// `threshold - hysteresis`.
    pub fn new(labels: usize, threshold: f32, hysteresis: f32) -> Self {
        Self {
            threshold,
            rearm_below: threshold - hysteresis.max(0.0),
            active: vec![false; labels],
        }
    }

    /// Whether `label` is active: it fired and has not been re-armed yet.
    pub fn is_active(&self, label: usize) -> bool {
        self.active.get(label).copied().unwrap_or(false)
    }

    /// Ends every active label's event at once (its label is gone: the bundle changed), whatever its score
    /// (`smoothed`, reported with the end). Returns the ends.
    pub fn end_all(&mut self, smoothed: &[f32]) -> Vec<Trigger> {
        let mut changes = Vec::new();
        for (label, active) in self.active.iter_mut().enumerate() {
            if std::mem::take(active) {
                let score = smoothed.get(label).copied().unwrap_or(0.0);
                changes.push(Trigger::Cleared { label, score });
            }
        }
        changes
    }

    /// Feeds one frame's smoothed scores; returns the changes, clears before fires.
    pub fn update(&mut self, smoothed: &[f32]) -> Vec<Trigger> {
        let mut changes = Vec::new();
        for (label, (&score, active)) in smoothed.iter().zip(self.active.iter_mut()).enumerate() {
            if *active && score < self.rearm_below {
                *active = false;
                changes.push(Trigger::Cleared { label, score });
            }
        }
        for (label, (&score, active)) in smoothed.iter().zip(self.active.iter_mut()).enumerate() {
            if !*active && score >= self.threshold {
                *active = true;
                changes.push(Trigger::Fired { label, score });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoother_averages_the_last_window() {
        let mut s = Smoother::new(2);
        assert_eq!(s.push(&[1.0, 0.0]), vec![1.0, 0.0]);
        assert!(!s.is_full());
        assert_eq!(s.push(&[0.0, 1.0]), vec![0.5, 0.5]);
        assert!(s.is_full());
        assert_eq!(s.push(&[0.0, 1.0]), vec![0.0, 1.0]);
        assert_eq!(s.mean(), vec![0.0, 1.0]);
        assert_eq!(Smoother::new(3).mean(), Vec::<f32>::new());
    }

    #[test]
    fn end_all_clears_only_the_active_labels_once() {
        let mut t = EventTrigger::new(3, 0.8, 0.1);
        t.update(&[0.9, 0.1, 0.85]);
        assert_eq!(
            t.end_all(&[0.9, 0.1, 0.85]),
            vec![
                Trigger::Cleared {
                    label: 0,
                    score: 0.9
                },
                Trigger::Cleared {
                    label: 2,
                    score: 0.85
                }
            ]
        );
        assert!(!t.is_active(0) && !t.is_active(2));
        assert_eq!(t.end_all(&[]), vec![]);
    }

    #[test]
    fn trigger_fires_once_and_rearms_below_the_hysteresis_band() {
        let mut t = EventTrigger::new(2, 0.8, 0.1);
        assert_eq!(t.update(&[0.5, 0.5]), vec![]);
        assert_eq!(
            t.update(&[0.15, 0.85]),
            vec![Trigger::Fired {
                label: 1,
                score: 0.85
            }]
        );
        assert!(t.is_active(1));
        // Inside the band (0.7..0.8): stays active, no new event.
        assert_eq!(t.update(&[0.25, 0.75]), vec![]);
        assert_eq!(t.update(&[0.15, 0.85]), vec![]);
        assert_eq!(
            t.update(&[0.35, 0.65]),
            vec![Trigger::Cleared {
                label: 1,
                score: 0.65
            }]
        );
        assert!(!t.is_active(1));
        assert_eq!(
            t.update(&[0.9, 0.1]),
            vec![Trigger::Fired {
                label: 0,
                score: 0.9
            }]
        );
    }
}

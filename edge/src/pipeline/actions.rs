//! The sinks that act: a GPIO line, Detection messages on a serial port, a shell command.
//!
//! With zones, a rule ([`LabelRule`]) acts on a label firing in any zone unless it names one. None of them ever
//! acts on the empty scene (the bundle's background label): it never fires, and per-frame serial messages skip
//! it.
//!
//! Their failures never stop the loop: each is reported through the `status` callback (once per run of
//! failures where it would repeat every frame), and the sink keeps trying.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use embedded_hal::digital::OutputPin;
use lookout_shared::Detection;

use super::{Active, ChangeKind, FrameReport, LabelChange, Sink, WatchSummary};
use crate::actions::{DetectionWriter, ExecAction};
use crate::gpio::LabelPin;

/// Where sinks report their own failures (the binary prints them on stderr).
pub type Status = Arc<dyn Fn(&str) + Send + Sync>;

/// Which events an action follows: one label, in one zone or in any (`--when LABEL[@ZONE]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRule {
    /// The label's name: a new bundle may number it otherwise.
    pub name: String,
    /// The label's index in the running bundle.
    pub label: usize,
    /// The zone; `None`: any zone (and the whole frame without zones).
    pub zone: Option<String>,
}

impl LabelRule {
    /// Follows the label to its index in a new bundle's `labels` (which the reload check made sure hold it;
    /// a label not there matches nothing).
    pub fn follow(&mut self, labels: &[String]) {
        self.label = labels
            .iter()
            .position(|l| *l == self.name)
            .unwrap_or(usize::MAX);
    }

    fn matches(&self, c: &LabelChange<'_>) -> bool {
        c.label == self.label && (self.zone.is_none() || self.zone.as_deref() == c.zone)
    }
}

/// Keeps a GPIO line high while one label's event is active (in one zone, or in any); drives it low at the end.
pub struct GpioSink<P: OutputPin> {
    pin: Option<LabelPin<P>>,
    rule: LabelRule,
    status: Status,
}

impl<P: OutputPin> GpioSink<P> {
    /// Drives `pin` for events of `rule`'s label in its zone (`None`: in any zone); the pin follows the
    /// rule's label.
    pub fn new(mut pin: LabelPin<P>, rule: LabelRule, status: Status) -> Self {
        pin.set_label(rule.label);
        Self {
            pin: Some(pin),
            rule,
            status,
        }
    }
}

impl<P: OutputPin> Sink for GpioSink<P> {
    fn model(
        &mut self,
        info: &super::reload::ModelInfo,
        _event: &super::reload::ModelEvent,
        _frame: u64,
    ) {
        self.rule.follow(&info.labels);
        if let Some(pin) = self.pin.as_mut() {
            pin.set_label(self.rule.label);
        }
    }

    fn after_frame(&mut self, active: &Active<'_>) {
        if let Some(pin) = self.pin.as_mut() {
            let zone = self.rule.zone.as_deref();
            if let Err(e) = pin.update(|label| active.is_active(zone, label)) {
                (self.status)(&format!("--gpio: cannot set the line: {e:?}"));
            }
        }
    }

    fn finish(&mut self, _summary: &WatchSummary) {
        if let Some(pin) = self.pin.take() {
            if let Err(e) = pin.release() {
                (self.status)(&format!("--gpio: cannot set the line low: {e:?}"));
            }
        }
    }
}

/// Sends a postcard + COBS [`Detection`] per event (score = smoothed score), or per frame (score = the frame's
/// own score).
pub struct SerialSink<W: Write> {
    writer: DetectionWriter<W>,
    per_frame: bool,
    failing: bool,
    sent: Arc<AtomicU64>,
    status: Status,
}

impl<W: Write> SerialSink<W> {
    /// Writes to `port`; `per_frame` sends every frame instead of every event.
    pub fn new(port: W, per_frame: bool, status: Status) -> Self {
        Self {
            writer: DetectionWriter::new(port),
            per_frame,
            failing: false,
            sent: Arc::new(AtomicU64::new(0)),
            status,
        }
    }

    /// Messages sent so far, readable from another sink.
    pub fn sent_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }

    fn send(&mut self, detection: &Detection) {
        match self.writer.send(detection) {
            Ok(()) => {
                self.failing = false;
                self.sent.store(self.writer.sent(), Ordering::SeqCst);
            }
            Err(e) => {
                // One line per run of failures, not one per frame.
                if !self.failing {
                    (self.status)(&format!("--serial: write failed: {e}; will keep trying"));
                }
                self.failing = true;
            }
        }
    }
}

fn detection(frame: u64, label: usize, score: f32, latency: std::time::Duration) -> Detection {
    Detection {
        frame,
        label: u16::try_from(label).unwrap_or(u16::MAX),
        score,
        latency_us: u32::try_from(latency.as_micros()).unwrap_or(u32::MAX),
    }
}

impl<W: Write> Sink for SerialSink<W> {
    fn frame(&mut self, f: &FrameReport<'_>) {
        // The empty scene is nothing to tell a microcontroller about.
        if self.per_frame && !f.prediction.background {
            self.send(&detection(
                f.number,
                f.prediction.label,
                f.prediction.score,
                f.latency,
            ));
        }
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        if !self.per_frame && c.kind == ChangeKind::Fired {
            self.send(&detection(c.frame, c.label, c.score, c.latency));
        }
    }
}

/// Runs a shell command on events (of one label, or any), rate-limited, never waiting for it.
pub struct ExecSink {
    action: ExecAction,
    when: Option<LabelRule>,
    status: Status,
}

impl ExecSink {
    /// Runs `action` on events that match `when` (any label in any zone when `None`).
    pub fn new(action: ExecAction, when: Option<LabelRule>, status: Status) -> Self {
        Self {
            action,
            when,
            status,
        }
    }
}

impl Sink for ExecSink {
    fn model(
        &mut self,
        info: &super::reload::ModelInfo,
        _event: &super::reload::ModelEvent,
        _frame: u64,
    ) {
        if let Some(rule) = self.when.as_mut() {
            rule.follow(&info.labels);
        }
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        if c.kind == ChangeKind::Fired && self.when.as_ref().is_none_or(|w| w.matches(c)) {
            if let Err(e) = self.action.fire(c.label_name, c.score, c.frame, c.zone) {
                (self.status)(&format!("--exec: cannot start the shell: {e}"));
            }
        }
    }

    fn after_frame(&mut self, _active: &Active<'_>) {
        self.action.reap();
    }
}

//! The watch loop as a library: source → newest-frame-wins slot → model → smoother and trigger → sinks.
//!
//! A capture thread ([`capture`]) reads frames into a [`LatestSlot`]; [`Pipeline::run`] takes the freshest
//! frame, decodes, classifies, smooths, detects label changes, and hands every result to its [`Sink`]s, in the
//! order given. When the model is slower than the source, waiting frames are replaced and counted as dropped,
//! so latency (capture → result) stays bounded instead of growing in a queue.
//!
//! A sink is whatever acts on results: [`output::OutputSink`] (text or JSON lines), [`actions::GpioSink`],
//! [`actions::SerialSink`], [`actions::ExecSink`], [`preview::PreviewSink`] (the live page),
//! [`mqtt::MqttSink`] (home automation), [`save::SaveSink`] (frames for the next training). A new one is one
//! type implementing [`Sink`]; `lookout-edge watch` only parses arguments and wires sinks together.

pub mod actions;
pub mod capture;
pub mod mqtt;
pub mod output;
pub mod preview;
pub mod save;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout_runtime::{Model, Prediction};

use crate::error::EdgeError;
use crate::slot::LatestSlot;
use crate::smoothing::{EventTrigger, Smoother, Trigger};
use crate::source::{FrameSource, RawFrame};
use crate::stats::LatencyHistogram;
use capture::{spawn_capture, Frame};

/// How the loop paces, smooths and stops.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchOptions {
    /// Frames per second for file and folder sources (0 = as fast as they can be read).
    pub fps: f32,
    /// Never drop frames: the source waits for the model (recorded files, not live cameras).
    pub no_drop: bool,
    /// Smoothing window in frames; events wait for a full window.
    pub smooth: usize,
    /// A label fires when its smoothed score rises to this.
    pub threshold: f32,
    /// A label re-arms when its smoothed score falls below `threshold - hysteresis`.
    pub hysteresis: f32,
    /// Stop after classifying this many frames.
    pub max_frames: Option<u64>,
    /// Tell the sinks when the scene becomes unknown and known again ([`Sink::scene`]), smoothed and with
    /// hysteresis like a label.
    pub on_unknown: bool,
}

/// One classified frame, as the sinks see it.
#[derive(Debug, Clone, Copy)]
pub struct FrameReport<'a> {
    /// Frame number, from 1, in capture order.
    pub number: u64,
    /// The file it came from, if any.
    pub name: Option<&'a str>,
    /// The model's answer.
    pub prediction: &'a Prediction,
    /// The frame as the source delivered it (encoded bytes from a camera or file, raw YUYV, …).
    pub raw: &'a RawFrame,
    /// The name of the predicted label.
    pub label: &'a str,
    /// Capture → result.
    pub latency: Duration,
    /// Results per second over the last few results.
    pub fps: f64,
    /// Frames captured after this one by the time its result was ready.
    pub behind: u64,
    /// Frames captured after this one by the time inference started (0 or 1 with newest-frame-wins).
    pub newer_at_start: u64,
}

/// Whether a label's event started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The smoothed score rose to the threshold: an event.
    Fired,
    /// The smoothed score fell below threshold minus hysteresis.
    Cleared,
}

impl ChangeKind {
    /// `event` or `clear`, as the JSON lines say it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Fired => "event",
            ChangeKind::Cleared => "clear",
        }
    }
}

/// A label's event starting or ending, at one frame.
#[derive(Debug, Clone, Copy)]
pub struct LabelChange<'a> {
    /// Started or ended.
    pub kind: ChangeKind,
    /// The frame it happened at.
    pub frame: u64,
    /// The label's index.
    pub label: usize,
    /// The label's name.
    pub label_name: &'a str,
    /// The label's smoothed score.
    pub score: f32,
    /// That frame's capture → result latency.
    pub latency: Duration,
}

/// The scene becoming unknown (most of the smoothing window is none of the labels) or known again.
#[derive(Debug, Clone, Copy)]
pub struct SceneChange {
    /// True: the scene became unknown; false: known again.
    pub unknown: bool,
    /// The frame it happened at.
    pub frame: u64,
    /// The fraction of the smoothing window that was unknown.
    pub fraction: f32,
}

/// What the whole run did.
#[derive(Debug, Clone, Default)]
pub struct WatchSummary {
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames classified.
    pub classified: u64,
    /// Frames replaced in the slot before the model got to them.
    pub dropped: u64,
    /// Frames that could not be decoded or classified.
    pub failed: u64,
    /// Events fired.
    pub events: u64,
    /// Frames that were none of the labels (the bundle's rejection); they count toward no label's event.
    pub unknown: u64,
    /// Largest [`FrameReport::behind`].
    pub max_behind: u64,
    /// Largest [`FrameReport::newer_at_start`].
    pub max_newer_at_start: u64,
    /// Capture → result latencies.
    pub latency: LatencyHistogram,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl WatchSummary {
    /// Classified frames per second over the run.
    pub fn fps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.classified as f64 / secs
        } else {
            0.0
        }
    }
}

/// What acts on results. Every method has a default that does nothing, so a sink implements what it needs.
/// Sinks run on the inference thread: one that may block (a network, a slow device) must hand off to its own
/// thread and drop work rather than stall the loop.
pub trait Sink {
    /// A frame was classified.
    fn frame(&mut self, _frame: &FrameReport<'_>) {}
    /// A frame could not be decoded or classified.
    fn frame_error(&mut self, _frame: u64, _name: Option<&str>, _error: &EdgeError) {}
    /// A label's event started or ended (after [`Sink::frame`] of the same frame).
    fn change(&mut self, _change: &LabelChange<'_>) {}
    /// The scene became unknown or known again (only with [`WatchOptions::on_unknown`]).
    fn scene(&mut self, _change: &SceneChange) {}
    /// The frame is done; `active` tells which labels are in an event now.
    fn after_frame(&mut self, _active: &dyn Fn(usize) -> bool) {}
    /// The run ended (the source ended, failed, or was stopped).
    fn finish(&mut self, _summary: &WatchSummary) {}
}

/// How a run ended.
#[derive(Debug)]
pub struct WatchOutcome {
    /// What it did.
    pub summary: WatchSummary,
    /// The source's error, when it failed rather than ended or was stopped.
    pub source_error: Option<EdgeError>,
}

/// Stops a running pipeline from another thread (a signal handler): the loop finishes its current frame.
#[derive(Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    slot: Arc<LatestSlot<Frame>>,
}

impl StopHandle {
    /// Asks the loop and the source to stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.slot.close_now();
    }
}

/// The watch loop, set up and not yet running.
pub struct Pipeline {
    options: WatchOptions,
    stop: Arc<AtomicBool>,
    slot: Arc<LatestSlot<Frame>>,
}

impl Pipeline {
    /// A pipeline with these options.
    pub fn new(options: WatchOptions) -> Self {
        Self {
            options,
            stop: Arc::new(AtomicBool::new(false)),
            slot: Arc::new(LatestSlot::new()),
        }
    }

    /// The flag sources watch to stop retrying a missing camera ([`crate::source::SourceOptions::stop`]).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// A handle that stops the run from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: Arc::clone(&self.stop),
            slot: Arc::clone(&self.slot),
        }
    }

    /// Runs until the source ends or fails, the run is stopped, or `max_frames` are classified; every result
    /// goes to `sinks` in order.
    pub fn run(
        self,
        source: Box<dyn FrameSource>,
        model: &mut Model,
        sinks: &mut [&mut dyn Sink],
    ) -> Result<WatchOutcome, EdgeError> {
        let labels = model.labels().to_vec();
        let captured = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let capture = spawn_capture(
            source,
            Arc::clone(&self.slot),
            Arc::clone(&self.stop),
            Arc::clone(&captured),
            self.options.fps,
            self.options.no_drop,
        )?;
        let started = Instant::now();
        let mut smoother = Smoother::new(self.options.smooth);
        let mut trigger = EventTrigger::new(
            labels.len(),
            self.options.threshold,
            self.options.hysteresis,
        );
        let mut fps_meter = FpsMeter::default();
        let mut scene = SceneWatch::new(&self.options);
        let mut summary = WatchSummary::default();
        let stop = self.stop_handle();

        while let Some(frame) = self.slot.take() {
            // With newest-frame-wins this is 0 (or 1, racing the capture thread): a queue would make it grow.
            let newer_at_start = captured.load(Ordering::SeqCst).saturating_sub(frame.number);
            summary.max_newer_at_start = summary.max_newer_at_start.max(newer_at_start);
            let name = frame.raw.name().map(|p| p.display().to_string());
            let result = frame
                .raw
                .decode()
                .and_then(|image| model.classify(&image).map_err(EdgeError::from));
            let prediction = match result {
                Ok(p) => p,
                Err(e) => {
                    summary.failed += 1;
                    for sink in sinks.iter_mut() {
                        sink.frame_error(frame.number, name.as_deref(), &e);
                    }
                    continue;
                }
            };
            let now = Instant::now();
            let latency = now - frame.captured;
            let behind = captured.load(Ordering::SeqCst).saturating_sub(frame.number);
            summary.classified += 1;
            summary.latency.record(latency);
            summary.max_behind = summary.max_behind.max(behind);
            let report = FrameReport {
                number: frame.number,
                name: name.as_deref(),
                prediction: &prediction,
                raw: &frame.raw,
                label: labels.get(prediction.label).map_or("?", String::as_str),
                latency,
                fps: fps_meter.tick(now),
                behind,
                newer_at_start,
            };
            for sink in sinks.iter_mut() {
                sink.frame(&report);
            }

            // An unknown frame votes for no label: its probabilities are for labels it is none of.
            let votes = if prediction.unknown {
                summary.unknown += 1;
                vec![0.0; prediction.probabilities.len()]
            } else {
                prediction.probabilities.clone()
            };
            let smoothed = smoother.push(&votes);
            let changes = if smoother.is_full() {
                trigger.update(&smoothed)
            } else {
                Vec::new()
            };
            let frame_changes = FrameChanges {
                frame: frame.number,
                latency,
                labels: &labels,
            };
            summary.events += frame_changes.tell(changes, sinks);
            if self.options.on_unknown {
                scene.update(prediction.unknown, frame.number, sinks);
            }
            for sink in sinks.iter_mut() {
                sink.after_frame(&|label| trigger.is_active(label));
            }
            if self
                .options
                .max_frames
                .is_some_and(|max| summary.classified >= max)
            {
                stop.stop();
            }
        }

        self.finish(capture, &captured, started, summary, sinks)
    }

    /// Joins the capture thread (unless stopped), completes the summary and tells the sinks.
    fn finish(
        &self,
        capture: std::thread::JoinHandle<Option<EdgeError>>,
        captured: &std::sync::atomic::AtomicU64,
        started: Instant,
        mut summary: WatchSummary,
        sinks: &mut [&mut dyn Sink],
    ) -> Result<WatchOutcome, EdgeError> {
        // When stopped, the capture thread may be blocked reading a pipe: do not wait for it then.
        let source_error = if self.stop.load(Ordering::SeqCst) {
            None
        } else {
            capture.join().map_err(|_| EdgeError::SourceRead {
                source_spec: "the capture thread".into(),
                reason: "it panicked".into(),
            })?
        };
        summary.captured = captured.load(Ordering::SeqCst);
        summary.dropped = self.slot.dropped();
        summary.elapsed = started.elapsed();
        for sink in sinks.iter_mut() {
            sink.finish(&summary);
        }
        Ok(WatchOutcome {
            summary,
            source_error,
        })
    }
}

/// The scene's "unknown" state: one more label, smoothed and triggered like the others.
struct SceneWatch {
    smoother: Smoother,
    trigger: EventTrigger,
}

impl SceneWatch {
    fn new(options: &WatchOptions) -> Self {
        SceneWatch {
            smoother: Smoother::new(options.smooth),
            trigger: EventTrigger::new(1, options.threshold, options.hysteresis),
        }
    }

    /// Adds one frame; tells the sinks when the scene became unknown or known again.
    fn update(&mut self, unknown: bool, frame: u64, sinks: &mut [&mut dyn Sink]) {
        let fraction = self.smoother.push(&[f32::from(u8::from(unknown))]);
        if !self.smoother.is_full() {
            return;
        }
        for change in self.trigger.update(&fraction) {
            let (unknown, fraction) = match change {
                Trigger::Fired { score, .. } => (true, score),
                Trigger::Cleared { score, .. } => (false, score),
            };
            let change = SceneChange {
                unknown,
                frame,
                fraction,
            };
            for sink in sinks.iter_mut() {
                sink.scene(&change);
            }
        }
    }
}

/// The label changes of one frame, told to every sink.
struct FrameChanges<'a> {
    frame: u64,
    latency: Duration,
    labels: &'a [String],
}

impl FrameChanges<'_> {
    /// Tells each change to the sinks; returns how many were events (a label firing).
    fn tell(&self, changes: Vec<Trigger>, sinks: &mut [&mut dyn Sink]) -> u64 {
        let mut events = 0;
        for change in changes {
            let (kind, label, score) = match change {
                Trigger::Fired { label, score } => (ChangeKind::Fired, label, score),
                Trigger::Cleared { label, score } => (ChangeKind::Cleared, label, score),
            };
            if kind == ChangeKind::Fired {
                events += 1;
            }
            let change = LabelChange {
                kind,
                frame: self.frame,
                label,
                label_name: self.labels.get(label).map_or("?", String::as_str),
                score,
                latency: self.latency,
            };
            for sink in sinks.iter_mut() {
                sink.change(&change);
            }
        }
        events
    }
}

/// Results per second over the last few results.
#[derive(Debug, Default)]
struct FpsMeter {
    times: VecDeque<Instant>,
}

impl FpsMeter {
    const WINDOW: usize = 16;

    fn tick(&mut self, now: Instant) -> f64 {
        if self.times.len() == Self::WINDOW {
            self.times.pop_front();
        }
        self.times.push_back(now);
        match (self.times.front(), self.times.len()) {
            (Some(&first), n) if n > 1 && now > first => {
                (n - 1) as f64 / (now - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

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
//!
//! What of the frame is classified is [`zone::Regions`]: the whole frame, one region (`--roi`), or named zones
//! (`--zone`), each cropped from the decoded frame and classified at every frame, with its own smoothing and
//! events ([`zone`]). A frame with zones is one frame: one capture, one decode, one entry in the counts; the
//! sinks get one [`FrameReport`] per zone, then that zone's changes, zone after zone, then one
//! [`Sink::after_frame`].

pub mod actions;
pub mod capture;
pub mod motion;
pub mod mqtt;
pub mod output;
pub mod preview;
pub mod reload;
mod report;
pub mod save;
pub mod zone;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lookout_runtime::Model;

use crate::error::EdgeError;
use crate::slot::LatestSlot;
use crate::source::FrameSource;
use capture::{spawn_capture, Frame};
use reload::{Answer, ModelEvent, ModelInfo, ReloadOptions, Reloaded, Reloader};
pub(crate) use report::FrameChanges;
pub use report::{
    answer, ChangeKind, FrameReport, LabelChange, SceneChange, WatchSummary, ZoneSummary,
};
use zone::ZoneState;
pub use zone::{Active, Regions, Zone, ZoneError};

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
    /// What of each frame is classified: the whole frame, one region, or zones.
    pub regions: Regions,
    /// Run the model only when something moved (`--motion`); `None`: on every frame.
    pub motion: Option<motion::MotionOptions>,
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
    fn scene(&mut self, _change: &SceneChange<'_>) {}
    /// The frame is done (every zone of it); `active` tells which labels are in an event now, and where.
    fn after_frame(&mut self, _active: &Active<'_>) {}
    /// The running bundle: at start, at a switch to a new one, or a new one refused (`frame`: the last frame
    /// classified before, 0 at start). After a switch, reports come from the new bundle.
    fn model(&mut self, _info: &ModelInfo, _event: &ModelEvent, _frame: u64) {}
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
    away: Arc<std::sync::atomic::AtomicU64>,
    slot: Arc<LatestSlot<Frame>>,
    reload: Option<(ReloadOptions, ModelInfo)>,
}

impl Pipeline {
    /// A pipeline with these options.
    pub fn new(options: WatchOptions) -> Self {
        Self {
            options,
            stop: Arc::new(AtomicBool::new(false)),
            away: Arc::default(),
            slot: Arc::new(LatestSlot::new()),
            reload: None,
        }
    }

    /// Tells the sinks of the running bundle (`info`) at start, and loads it again from `options.path` when
    /// asked ([`reload`]): checked, self-tested on recent frames, switched in between two frames.
    pub fn with_reload(mut self, options: ReloadOptions, info: ModelInfo) -> Self {
        self.reload = Some((options, info));
        self
    }

    /// The flag sources watch to stop retrying a missing camera ([`crate::source::SourceOptions::stop`]).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Where a live source adds up the time it spent without its camera
    /// ([`crate::source::SourceOptions::away`]), for the summary.
    pub fn camera_away(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.away)
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
        let mut labels = model.labels().to_vec();
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
        let mut zones = ZoneState::all(&self.options.regions, labels.len(), &self.options);
        let mut fps_meter = FpsMeter::default();
        let mut summary = WatchSummary::default();
        let stop = self.stop_handle();
        let mut running = self.reload.as_ref().map(|(_, info)| info.clone());
        let reloader = self.reload.clone().map(|(options, info)| {
            for sink in sinks.iter_mut() {
                sink.model(&info, &ModelEvent::Start, 0);
            }
            Reloader::spawn(options, info, self.options.regions.clone())
        });

        while let Some(frame) = self.slot.take() {
            // With newest-frame-wins this is 0 (or 1, racing the capture thread): a queue would make it grow.
            let newer_at_start = captured.load(Ordering::SeqCst).saturating_sub(frame.number);
            summary.max_newer_at_start = summary.max_newer_at_start.max(newer_at_start);
            let name = frame.raw.name().map(|p| p.display().to_string());
            // Every zone is classified before any is told: a frame is reported whole, or failed whole.
            let motion = self.options.motion;
            // Decoded for the running model and the regions it will see: a large JPEG frame smaller, as
            // `classify` decodes the same file.
            let regions: Vec<lookout_shared::Region> = zones.iter().map(|z| z.region).collect();
            let results = frame
                .raw
                .decode_for(model.preprocess_spec(), &regions)
                .and_then(|image| {
                    let results = classify_regions(model, &image, &mut zones, motion.as_ref())?;
                    Ok((image, results))
                });
            let (image, results) = match results {
                Ok(results) => results,
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
            let fps = fps_meter.tick(now);
            summary.classified += 1;
            summary.latency.record(latency);
            summary.max_behind = summary.max_behind.max(behind);
            let frame_changes = FrameChanges {
                frame: frame.number,
                latency,
                labels: &labels,
            };
            for (zone, (prediction, crop, model_ran)) in zones.iter_mut().zip(&results) {
                summary.model_runs += u64::from(*model_ran);
                let report = FrameReport {
                    number: frame.number,
                    name: name.as_deref(),
                    prediction,
                    raw: &frame.raw,
                    crop: crop.as_ref(),
                    zone: zone.name.as_deref(),
                    region: zone.region,
                    label: labels.get(prediction.label).map_or("?", String::as_str),
                    latency,
                    fps,
                    behind,
                    newer_at_start,
                    model_ran: *model_ran,
                };
                for sink in sinks.iter_mut() {
                    sink.frame(&report);
                }
                summary.events +=
                    zone.update(prediction, &frame_changes, self.options.on_unknown, sinks);
            }
            let active = Active { zones: &zones };
            for sink in sinks.iter_mut() {
                sink.after_frame(&active);
            }
            if let Some(reloader) = &reloader {
                if let Ok(mut recent) = reloader.recent.lock() {
                    if recent.wants(now) {
                        let answers = results.iter().map(|(p, _, _)| Answer::of(p)).collect();
                        recent.push(now, image, answers);
                    }
                }
                // Between two frames: the next one is classified by the new bundle.
                match reloader.take() {
                    Some(Reloaded::Ready {
                        model: new,
                        info,
                        event,
                    }) => {
                        if info.labels != labels {
                            let changes = FrameChanges {
                                frame: frame.number,
                                latency,
                                labels: &labels,
                            };
                            for zone in &mut zones {
                                zone.relabel(info.labels.len(), &changes, &self.options, sinks);
                            }
                            labels.clone_from(&info.labels);
                        }
                        *model = *new;
                        for sink in sinks.iter_mut() {
                            sink.model(&info, &event, frame.number);
                        }
                        running = Some(info);
                    }
                    Some(Reloaded::Refused(event)) => {
                        if let Some(info) = &running {
                            for sink in sinks.iter_mut() {
                                sink.model(info, &event, frame.number);
                            }
                        }
                    }
                    None => {}
                }
            }
            if self
                .options
                .max_frames
                .is_some_and(|max| summary.classified >= max)
            {
                stop.stop();
            }
        }

        for zone in &zones {
            summary.unknown += zone.counts.unknown;
            summary.background += zone.counts.background;
            if let Some(name) = &zone.name {
                summary.zones.push(ZoneSummary {
                    name: name.clone(),
                    counts: zone.counts.clone(),
                });
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
        summary.camera_away = std::time::Duration::from_millis(self.away.load(Ordering::SeqCst));
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

/// Each region of the frame classified: the prediction, the pixels the model saw when the region is not the
/// whole frame (a sink may save them), and whether the model ran (with `--motion`, a region where nothing moved
/// keeps its last answer).
type RegionResult = (lookout_runtime::Prediction, Option<image::RgbImage>, bool);

fn classify_regions(
    model: &mut Model,
    image: &image::RgbImage,
    zones: &mut [ZoneState],
    motion: Option<&motion::MotionOptions>,
) -> Result<Vec<RegionResult>, EdgeError> {
    let now = Instant::now();
    zones
        .iter_mut()
        .map(|zone| {
            let crop = (!zone.region.is_full()).then(|| zone.region.crop(image));
            let pixels = crop.as_ref().unwrap_or(image);
            let run = match (zone.gate.as_mut(), motion, &zone.last) {
                (Some(gate), Some(options), Some(_)) => gate.should_run(pixels, now, options),
                (Some(gate), Some(options), None) => {
                    // The first frame always runs; it also starts the background.
                    gate.should_run(pixels, now, options);
                    true
                }
                _ => true,
            };
            let prediction = match (&zone.last, run) {
                (Some(last), false) => lookout_runtime::Prediction {
                    preprocess: std::time::Duration::ZERO,
                    inference: std::time::Duration::ZERO,
                    ..last.clone()
                },
                _ => model.classify(pixels)?,
            };
            if zone.gate.is_some() {
                zone.last = Some(prediction.clone());
            }
            Ok((prediction, crop, run))
        })
        .collect()
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

//! What the loop tells its sinks: a classified frame (per zone), a label's event starting or ending, the scene
//! becoming unknown, and the summary of the run.

use std::time::Duration;

use image::RgbImage;
use lookout_runtime::Prediction;
use lookout_shared::Region;

use super::zone::ZoneCounts;
use super::Sink;
use crate::smoothing::Trigger;
use crate::source::RawFrame;

/// One classified frame (or, with zones, one zone of a frame), as the sinks see it.
#[derive(Debug, Clone, Copy)]
pub struct FrameReport<'a> {
    /// Frame number, from 1, in capture order.
    pub number: u64,
    /// The file it came from, if any.
    pub name: Option<&'a str>,
    /// The model's answer.
    pub prediction: &'a Prediction,
    /// The frame as the source delivered it (encoded bytes from a camera or file, raw YUYV, …), whole.
    pub raw: &'a RawFrame,
    /// The pixels the model saw when they are a part of the frame (`--roi`, a zone); `None` for the whole frame.
    pub crop: Option<&'a RgbImage>,
    /// The zone this report is about (`None` without zones).
    pub zone: Option<&'a str>,
    /// Where the classified pixels are in the frame ([`Region::FULL`] for the whole frame).
    pub region: Region,
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
    /// Whether the model ran on this frame (with `--motion`, a still frame keeps the region's last answer).
    pub model_ran: bool,
}

impl FrameReport<'_> {
    /// What the frame is, as a word for people: the label, `unknown` (none of the labels) or `nothing` (the
    /// empty scene, the bundle's background label).
    pub fn answer(&self) -> &str {
        answer(self.prediction, self.label)
    }
}

/// `unknown`, `nothing` (the empty scene) or the label: what a prediction is, for people and for topics.
pub fn answer<'a>(prediction: &Prediction, label: &'a str) -> &'a str {
    if prediction.unknown {
        "unknown"
    } else if prediction.background {
        "nothing"
    } else {
        label
    }
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
    /// The zone it happened in (`None` without zones).
    pub zone: Option<&'a str>,
}

/// The scene becoming unknown (most of the smoothing window is none of the labels) or known again.
#[derive(Debug, Clone, Copy)]
pub struct SceneChange<'a> {
    /// True: the scene became unknown; false: known again.
    pub unknown: bool,
    /// The frame it happened at.
    pub frame: u64,
    /// The fraction of the smoothing window that was unknown.
    pub fraction: f32,
    /// The zone whose scene it is (`None` without zones).
    pub zone: Option<&'a str>,
}

/// What one zone saw over a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneSummary {
    /// The zone.
    pub name: String,
    /// Its counts.
    pub counts: ZoneCounts,
}

/// What the whole run did.
#[derive(Debug, Clone, Default)]
pub struct WatchSummary {
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames classified (a frame with several zones counts once).
    pub classified: u64,
    /// Frames replaced in the slot before the model got to them.
    pub dropped: u64,
    /// Frames that could not be decoded or classified.
    pub failed: u64,
    /// Events fired (in all zones).
    pub events: u64,
    /// Classifications that were none of the labels (the bundle's rejection); they count toward no label's
    /// event. With zones, each zone's count adds up.
    pub unknown: u64,
    /// Classifications that were the empty scene (the bundle's background label): "nothing", which counts
    /// toward no label's event either. With zones, each zone's count adds up.
    pub background: u64,
    /// Per zone, in the order given (empty without zones).
    pub zones: Vec<ZoneSummary>,
    /// Times the model ran (each region of each frame); with `--motion`, fewer than the regions classified.
    pub model_runs: u64,
    /// Largest [`FrameReport::behind`].
    pub max_behind: u64,
    /// Largest [`FrameReport::newer_at_start`].
    pub max_newer_at_start: u64,
    /// Capture → result latencies.
    pub latency: crate::stats::LatencyHistogram,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time a live source spent without its camera (outages, a camera missing at start).
    pub camera_away: Duration,
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

/// The label changes of one frame, told to every sink.
pub(crate) struct FrameChanges<'a> {
    pub frame: u64,
    pub latency: Duration,
    pub labels: &'a [String],
}

impl FrameChanges<'_> {
    /// Tells each change to the sinks; returns how many were events (a label firing).
    pub fn tell(
        &self,
        changes: Vec<Trigger>,
        zone: Option<&str>,
        sinks: &mut [&mut dyn Sink],
    ) -> u64 {
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
                zone,
            };
            for sink in sinks.iter_mut() {
                sink.change(&change);
            }
        }
        events
    }
}

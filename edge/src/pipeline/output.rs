//! The sink that prints: one text line per frame, event and error (or JSON lines with `--json`), then a
//! summary. With zones, every frame, event and scene line names its zone (`"zone"` in JSON, a `[zone]` prefix
//! in text), and the summary counts each zone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::reload::{ModelEvent, ModelInfo};
use super::{FrameReport, LabelChange, SceneChange, Sink, WatchSummary};
use crate::error::EdgeError;
use crate::stats::{ms, round3};

/// Prints results on stdout (frames, events, JSON errors and summary) and stderr (text errors and summary).
#[derive(Debug)]
pub struct OutputSink {
    json: bool,
    serial_sent: Option<Arc<AtomicU64>>,
}

impl OutputSink {
    /// Text lines, or JSON lines when `json`; `serial_sent` is the counter of a
    /// [`super::actions::SerialSink`], for the summary.
    pub fn new(json: bool, serial_sent: Option<Arc<AtomicU64>>) -> Self {
        Self { json, serial_sent }
    }
}

impl Sink for OutputSink {
    fn frame(&mut self, f: &FrameReport<'_>) {
        if self.json {
            let mut line = json!({"type": "frame", "frame": f.number, "label": f.label, "label_index": f.prediction.label,
                "score": f.prediction.score, "unknown": f.prediction.unknown, "background": f.prediction.background,
                "ood_score": f.prediction.ood_score, "latency_ms": round3(ms(f.latency)), "fps": round3(f.fps),
                "behind": f.behind, "newer_at_start": f.newer_at_start, "model_ran": f.model_ran});
            if let Some(name) = f.name {
                line["path"] = json!(name);
            }
            if let Some(zone) = f.zone {
                line["zone"] = json!(zone);
            }
            println!("{line}");
        } else {
            println!(
                "{}frame {:>6}  {:<20} {:.3}  {:>7.1} ms  {:>5.1} fps",
                prefix(f.zone),
                f.number,
                f.answer(),
                f.prediction.score,
                ms(f.latency),
                f.fps
            );
        }
    }

    fn frame_error(&mut self, frame: u64, name: Option<&str>, e: &EdgeError) {
        if self.json {
            let mut line = json!({"type": "error", "frame": frame, "error": e.to_string()});
            if let Some(name) = name {
                line["path"] = json!(name);
            }
            println!("{line}");
        } else {
            eprintln!(
                "frame {frame}{}: {e}",
                name.map(|n| format!(" ({n})")).unwrap_or_default()
            );
        }
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        let kind = c.kind.as_str();
        if self.json {
            let mut line = json!({"type": kind, "frame": c.frame, "label": c.label_name, "label_index": c.label, "score": c.score});
            if let Some(zone) = c.zone {
                line["zone"] = json!(zone);
            }
            println!("{line}");
        } else {
            println!(
                "{}{} {} (smoothed score {:.3}) at frame {}",
                prefix(c.zone),
                kind.to_uppercase(),
                c.label_name,
                c.score,
                c.frame
            );
        }
    }

    fn scene(&mut self, c: &SceneChange<'_>) {
        let kind = if c.unknown { "unknown" } else { "known" };
        if self.json {
            let mut line = json!({"type": kind, "frame": c.frame, "fraction": c.fraction});
            if let Some(zone) = c.zone {
                line["zone"] = json!(zone);
            }
            println!("{line}");
        } else {
            println!(
                "{}{} scene ({:.0}% of the window is none of the labels) at frame {}",
                prefix(c.zone),
                kind.to_uppercase(),
                c.fraction * 100.0,
                c.frame
            );
        }
    }

    fn model(&mut self, info: &ModelInfo, event: &ModelEvent, frame: u64) {
        if self.json {
            let mut line = super::reload::model_report(info, event, frame);
            line["type"] = json!("model");
            println!("{line}");
            return;
        }
        let sha = &info.sha256[..info.sha256.len().min(12)];
        // Text goes to stderr like the other status lines: stdout stays one line per frame and event.
        match event {
            ModelEvent::Start => eprintln!(
                "model: {} ({sha}, {}, labels {})",
                info.path.display(),
                info.precision,
                info.labels.join(", ")
            ),
            ModelEvent::Switch {
                trigger,
                self_test,
                load_ms,
                labels_changed,
                ..
            } => {
                let labels = if labels_changed.added.is_empty() && labels_changed.removed.is_empty()
                {
                    String::new()
                } else {
                    format!(
                        "; labels now {} (added: {}; removed: {})",
                        info.labels.join(", "),
                        labels_changed.added.join(", "),
                        labels_changed.removed.join(", ")
                    )
                };
                eprintln!(
                    "model: switched to {sha} after frame {frame} ({trigger:?}; loaded and self-tested in {load_ms:.0} ms; \
                     {} of {} recent answers changed{labels})",
                    self_test.changed, self_test.frames
                )
            }
            ModelEvent::Refused { reason, .. } => {
                eprintln!("model: new bundle refused, {sha} goes on running: {reason}")
            }
        }
    }

    fn finish(&mut self, s: &WatchSummary) {
        let secs = s.elapsed.as_secs_f64();
        let fps = s.fps();
        if self.json {
            let serial_sent = self
                .serial_sent
                .as_ref()
                .map(|sent| sent.load(Ordering::SeqCst));
            let mut line = json!({"type": "summary", "captured": s.captured, "frames": s.classified, "dropped": s.dropped, "failed": s.failed,
                "events": s.events, "unknown": s.unknown, "background": s.background, "model_runs": s.model_runs, "latency_ms": {"mean": round3(s.latency.mean_ms()),
                "p50": round3(s.latency.quantile_ms(0.5)), "p99": round3(s.latency.quantile_ms(0.99)), "max": round3(s.latency.max_ms())},
                "max_behind": s.max_behind, "max_newer_at_start": s.max_newer_at_start, "fps": round3(fps), "seconds": round3(secs),
                "camera_away_s": round3(s.camera_away.as_secs_f64()),
                "serial_sent": serial_sent});
            if !s.zones.is_empty() {
                line["zones"] = s
                    .zones
                    .iter()
                    .map(|z| json!({"zone": z.name, "classified": z.counts.classified, "unknown": z.counts.unknown,
                        "background": z.counts.background, "events": z.counts.events}))
                    .collect();
            }
            println!("{line}");
        } else {
            eprintln!(
                "{} frames classified of {} captured ({} dropped, {} failed, {} unknown, {} nothing), {} events; latency mean {:.1} ms, p99 {:.1} ms; {fps:.1} fps over {secs:.1} s",
                s.classified,
                s.captured,
                s.dropped,
                s.failed,
                s.unknown,
                s.background,
                s.events,
                s.latency.mean_ms(),
                s.latency.quantile_ms(0.99),
            );
            if !s.camera_away.is_zero() {
                eprintln!(
                    "  the camera was away for {:.1} s of it",
                    s.camera_away.as_secs_f64()
                );
            }
            let regions = s.classified * s.zones.len().max(1) as u64;
            if s.model_runs < regions {
                eprintln!(
                    "  --motion: the model ran {} of {regions} times; a still scene kept its last answer",
                    s.model_runs
                );
            }
            for z in &s.zones {
                eprintln!(
                    "  [{}] {} classified ({} unknown, {} nothing), {} events",
                    z.name,
                    z.counts.classified,
                    z.counts.unknown,
                    z.counts.background,
                    z.counts.events
                );
            }
        }
    }
}

/// `[zone] ` before a text line with zones; nothing without.
fn prefix(zone: Option<&str>) -> String {
    zone.map(|z| format!("[{z}] ")).unwrap_or_default()
}

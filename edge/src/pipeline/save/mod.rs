//! `watch --capture DIR`: the frames worth labelling, saved for the next training.
//!
//! A rule picks frames (`uncertain`, `unknown`, `event`, `every:N`); each is written as the source delivered
//! it (a camera's JPEG is not re-encoded; only raw YUYV or decoded frames are encoded, as JPEG) to
//! `DIR/<predicted label>/<unix ms>-<frame>.<ext>`, with a JSON sidecar beside it (scores, the model's sha256,
//! the time, the rule). `DIR` is then an ImageFolder: move the wrong ones to the right folder and `lookout fit`
//! on old + new photos. Writes are atomic and happen on a thread of their own behind a short queue: a slow SD
//! card drops frames to save (counted) rather than stalling the loop. A disk budget removes the oldest saved
//! frames first; a rate limit keeps a steady scene from filling it.
//!
//! With `--roi` or zones, what is saved is what the model saw: the crop, encoded as JPEG on the writer thread,
//! with the zone and the region in the sidecar (a crop is what the next training should learn from, not the
//! whole frame). Each zone has its own rate limit, so one busy zone does not starve the others. A frame of the
//! empty scene (the bundle's background label) goes to that label's folder, with `"background": true`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use image::RgbImage;

use super::reload::{ModelEvent, ModelInfo};
use super::{FrameReport, LabelChange, Sink, WatchSummary};
use crate::source::RawFrame;

mod rule;
pub use rule::SaveRule;

/// Settings of the saver.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// The folder (created if missing).
    pub dir: PathBuf,
    /// Which frames.
    pub rule: SaveRule,
    /// Keep at most this many bytes of saved frames and sidecars in `dir`; the oldest go first.
    pub max_bytes: u64,
    /// Save at most one frame per this interval.
    pub min_interval: Duration,
    /// sha256 of the bundle, written into every sidecar.
    pub model_sha256: String,
}

/// What the saver did, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct SaveCounters {
    /// Frames written.
    pub saved: AtomicU64,
    /// Frames the rule chose but the writer had no room for (queue full) or could not write.
    pub dropped: AtomicU64,
    /// Saved frames removed to stay within the disk budget.
    pub removed: AtomicU64,
}

/// One frame to write.
struct Job {
    folder: String,
    stem: String,
    image: JobImage,
    sidecar: Vec<u8>,
}

/// What to write: bytes as delivered, or pixels to encode (on the writer thread, off the loop).
enum JobImage {
    Encoded {
        bytes: Vec<u8>,
        extension: &'static str,
    },
    Pixels(RgbImage),
}

/// A frame kept for the `event` rule until its zone's changes are told (they come after the frame).
struct Kept {
    number: u64,
    image: JobImage,
    sidecar: serde_json::Value,
    zone: Option<String>,
}

/// The sink.
pub struct SaveSink {
    options: SaveOptions,
    queue: Option<SyncSender<Box<Job>>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<SaveCounters>,
    /// When each zone (`None`: the frame) last saved.
    last_saved: HashMap<Option<String>, Instant>,
    /// The last frame, kept for `event` (the event is told after the frame).
    last: Option<Kept>,
}

impl std::fmt::Debug for SaveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveSink")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Frames waiting for the writer; beyond this the sink drops instead of queueing.
const QUEUE: usize = 8;

impl SaveSink {
    /// Creates `dir`, counts what is already in it against the budget, and starts the writer thread.
    pub fn new(options: SaveOptions) -> std::io::Result<(Self, Arc<SaveCounters>)> {
        std::fs::create_dir_all(&options.dir)?;
        let counters = Arc::new(SaveCounters::default());
        let (queue, jobs) = sync_channel::<Box<Job>>(QUEUE);
        let mut budget = Budget::scan(&options.dir, options.max_bytes);
        let dir = options.dir.clone();
        let writer_counters = Arc::clone(&counters);
        let writer = std::thread::Builder::new()
            .name("lookout-save".into())
            .spawn(move || {
                for job in jobs {
                    match write_job(&dir, &job) {
                        Ok(files) => {
                            writer_counters.saved.fetch_add(1, Ordering::SeqCst);
                            let removed = budget.add(files);
                            writer_counters.removed.fetch_add(removed, Ordering::SeqCst);
                        }
                        Err(_) => {
                            writer_counters.dropped.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })?;
        Ok((
            SaveSink {
                options,
                queue: Some(queue),
                writer: Some(writer),
                counters: Arc::clone(&counters),
                last_saved: HashMap::new(),
                last: None,
            },
            counters,
        ))
    }

    fn chosen(&self, f: &FrameReport<'_>) -> bool {
        match self.options.rule {
            SaveRule::Uncertain(bound) => f.prediction.score < bound,
            SaveRule::Unknown => f.prediction.unknown,
            SaveRule::Every(n) => f.number.is_multiple_of(n),
            SaveRule::Event => false,
        }
    }

    /// Whether the zone saved less than the interval ago.
    fn too_soon(&self, zone: Option<&str>, now: Instant) -> bool {
        self.last_saved
            .get(&zone.map(str::to_string))
            .is_some_and(|t| now.duration_since(*t) < self.options.min_interval)
    }

    fn save(&mut self, kept: Kept, folder: String) {
        let now = Instant::now();
        if self.too_soon(kept.zone.as_deref(), now) {
            return;
        }
        let Kept {
            number,
            image,
            mut sidecar,
            zone,
        } = kept;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stem = match &zone {
            Some(zone) => format!("{millis}-{number:06}-{zone}"),
            None => format!("{millis}-{number:06}"),
        };
        self.last_saved.insert(zone, now);
        sidecar["time_unix_ms"] = json!(millis as u64);
        sidecar["rule"] = json!(self.options.rule.name());
        sidecar["model_sha256"] = json!(self.options.model_sha256);
        let job = Box::new(Job {
            folder,
            stem,
            image,
            sidecar: serde_json::to_vec_pretty(&sidecar).unwrap_or_default(),
        });
        match self.queue.as_ref().map(|q| q.try_send(job)) {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                self.counters.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl Sink for SaveSink {
    fn model(&mut self, info: &ModelInfo, _event: &ModelEvent, _frame: u64) {
        self.options.model_sha256.clone_from(&info.sha256);
    }

    fn frame(&mut self, f: &FrameReport<'_>) {
        let chosen = self.chosen(f);
        let keep = !chosen && self.options.rule == SaveRule::Event;
        // Copying or encoding a frame costs: only for frames that may be saved, and not when rate-limited.
        if !(chosen || keep) || (chosen && self.too_soon(f.zone, Instant::now())) {
            return;
        }
        let image = match f.crop {
            Some(crop) => JobImage::Pixels(crop.clone()),
            None => match encoded(f.raw) {
                Some(image) => image,
                None => return,
            },
        };
        let folder = if f.prediction.unknown {
            "unknown".to_string()
        } else {
            folder_name(f.label)
        };
        let mut sidecar = json!({
            "frame": f.number,
            "label": f.label,
            "score": f.prediction.score,
            "scores": f.prediction.probabilities,
            "unknown": f.prediction.unknown,
            "background": f.prediction.background,
            "ood_score": f.prediction.ood_score,
            "source": f.name,
        });
        if let Some(zone) = f.zone {
            sidecar["zone"] = json!(zone);
        }
        if !f.region.is_full() {
            sidecar["region"] = json!(f.region.to_string());
        }
        let kept = Kept {
            number: f.number,
            image,
            sidecar,
            zone: f.zone.map(str::to_string),
        };
        if chosen {
            self.save(kept, folder);
        } else {
            self.last = Some(kept);
        }
    }

    fn change(&mut self, change: &LabelChange<'_>) {
        if self.options.rule != SaveRule::Event || change.kind != super::ChangeKind::Fired {
            return;
        }
        if let Some(mut kept) = self.last.take() {
            if kept.number == change.frame && kept.zone.as_deref() == change.zone {
                kept.sidecar["event"] = json!(change.label_name);
                self.save(kept, folder_name(change.label_name));
            }
        }
    }

    fn finish(&mut self, _summary: &WatchSummary) {
        // Let the writer drain the queue, so that what the summary counts is on disk.
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A label as a folder name: path separators and dots cannot make it leave `DIR`.
fn folder_name(label: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match name.trim_matches('.') {
        "" => "_".to_string(),
        _ => name,
    }
}

/// What to write for a whole frame: encoded frames as delivered, the rest as pixels (JPEG on the writer thread).
fn encoded(raw: &RawFrame) -> Option<JobImage> {
    match raw {
        RawFrame::Encoded { bytes, .. } => {
            let extension = match image::guess_format(bytes).ok()? {
                image::ImageFormat::Jpeg => "jpg",
                image::ImageFormat::Png => "png",
                image::ImageFormat::WebP => "webp",
                image::ImageFormat::Gif => "gif",
                image::ImageFormat::Bmp => "bmp",
                image::ImageFormat::Tiff => "tiff",
                _ => "img",
            };
            Some(JobImage::Encoded {
                bytes: bytes.clone(),
                extension,
            })
        }
        RawFrame::Yuyv { .. } | RawFrame::Rgb(_) => raw.decode().ok().map(JobImage::Pixels),
        RawFrame::Unreadable { .. } => None,
    }
}

/// The bytes of the image file and their extension: as delivered, or the pixels as JPEG (quality 90).
fn file_bytes(image: &JobImage) -> std::io::Result<(std::borrow::Cow<'_, [u8]>, &'static str)> {
    match image {
        JobImage::Encoded { bytes, extension } => Ok((bytes.as_slice().into(), extension)),
        JobImage::Pixels(pixels) => {
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
                .encode_image(pixels)
                .map_err(std::io::Error::other)?;
            Ok((out.into(), "jpg"))
        }
    }
}

/// Writes the frame and then its sidecar, each atomically; returns the files with their sizes.
fn write_job(dir: &Path, job: &Job) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let folder = dir.join(&job.folder);
    std::fs::create_dir_all(&folder)?;
    let (bytes, extension) = file_bytes(&job.image)?;
    let image = folder.join(format!("{}.{extension}", job.stem));
    let sidecar = folder.join(format!("{}.json", job.stem));
    let write = |path: &Path, bytes: &[u8]| {
        lookout_shared::atomic::write_atomic(path, bytes).map_err(|e| e.source)
    };
    write(&image, &bytes)?;
    write(&sidecar, &job.sidecar)?;
    Ok(vec![
        (image, bytes.len() as u64),
        (sidecar, job.sidecar.len() as u64),
    ])
}

/// The saved files, oldest first, and their total size against the budget.
struct Budget {
    files: VecDeque<(PathBuf, u64)>,
    total: u64,
    max: u64,
}

impl Budget {
    /// What earlier runs saved in `dir` (one level of label folders), oldest first by modification time.
    fn scan(dir: &Path, max: u64) -> Budget {
        let mut found: Vec<(SystemTime, PathBuf, u64)> = Vec::new();
        for folder in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if !folder.path().is_dir() {
                continue;
            }
            for file in std::fs::read_dir(folder.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(meta) = file.metadata() {
                    if meta.is_file() {
                        let time = meta.modified().unwrap_or(UNIX_EPOCH);
                        found.push((time, file.path(), meta.len()));
                    }
                }
            }
        }
        found.sort();
        let total = found.iter().map(|f| f.2).sum();
        Budget {
            files: found
                .into_iter()
                .map(|(_, path, len)| (path, len))
                .collect(),
            total,
            max,
        }
    }

    /// Counts `files` in and removes the oldest until the total fits; returns how many frames went.
    fn add(&mut self, files: Vec<(PathBuf, u64)>) -> u64 {
        for (path, len) in files {
            self.total += len;
            self.files.push_back((path, len));
        }
        let mut removed = 0;
        while self.total > self.max {
            let Some((path, len)) = self.files.pop_front() else {
                break;
            };
            if std::fs::remove_file(&path).is_ok() && path.extension().is_some_and(|e| e != "json")
            {
                removed += 1;
            }
            self.total = self.total.saturating_sub(len);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_scene_is_not_unknown_to_the_unknown_rule() {
        let dir = tempfile::tempdir().unwrap();
        let options = |rule| SaveOptions {
            dir: dir.path().to_path_buf(),
            rule,
            max_bytes: 1 << 20,
            min_interval: Duration::ZERO,
            model_sha256: "0".into(),
        };
        let prediction = |unknown, background| lookout_runtime::Prediction {
            label: 1,
            score: 0.9,
            probabilities: vec![0.1, 0.9],
            preprocess: Duration::ZERO,
            inference: Duration::ZERO,
            ood_score: Some(0.5),
            unknown,
            background,
        };
        let raw = RawFrame::Rgb(RgbImage::new(4, 4));
        let report = |prediction| FrameReport {
            number: 1,
            name: None,
            prediction,
            raw: &raw,
            crop: None,
            zone: None,
            region: lookout_shared::Region::FULL,
            label: "background",
            latency: Duration::ZERO,
            fps: 0.0,
            behind: 0,
            newer_at_start: 0,
            model_ran: true,
        };
        let (unknown_rule, _) = SaveSink::new(options(SaveRule::Unknown)).unwrap();
        let (empty, strange) = (prediction(false, true), prediction(true, false));
        assert!(!unknown_rule.chosen(&report(&empty)));
        assert!(unknown_rule.chosen(&report(&strange)));
        let (uncertain_rule, _) = SaveSink::new(options(SaveRule::Uncertain(0.95))).unwrap();
        assert!(uncertain_rule.chosen(&report(&empty)));
    }

    #[test]
    fn labels_cannot_leave_the_folder() {
        assert_eq!(folder_name("Cat"), "Cat");
        assert_eq!(folder_name("../etc"), ".._etc");
        assert_eq!(folder_name(".."), "_");
        assert_eq!(folder_name("a/b"), "a_b");
    }

    #[test]
    fn the_budget_removes_the_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(PathBuf, u64)> = (0..4)
            .map(|i| {
                let path = dir.path().join(format!("{i}.jpg"));
                std::fs::write(&path, [0u8; 100]).unwrap();
                (path, 100)
            })
            .collect();
        let mut budget = Budget {
            files: VecDeque::new(),
            total: 0,
            max: 250,
        };
        assert_eq!(budget.add(files[..2].to_vec()), 0);
        assert_eq!(budget.add(files[2..].to_vec()), 2);
        assert!(!files[0].0.exists() && !files[1].0.exists());
        assert!(files[2].0.exists() && files[3].0.exists());
        assert_eq!(budget.total, 200);
    }
}

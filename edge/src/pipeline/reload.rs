//! A new bundle while watching, without a restart: the camera, the preview's viewers, the MQTT session and the
//! smoothing state stay. A thread of its own ([`Reloader`]) loads the bundle when asked (SIGHUP, or the bundle
//! file replaced, as `scp`/`rsync` leave it: a rename), checks it against the running one and self-tests it on
//! frames `watch` recently saw; [`super::Pipeline::run`] switches between two frames. A bundle that fails any
//! check is refused with one line and the running one goes on. Every sink hears of the running bundle at start,
//! at every switch and at every refusal ([`super::Sink::model`]).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lookout_runtime::{Model, RuntimeOptions};
use serde::Serialize;

use super::zone::Regions;

/// What a bundle is, as `watch` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The bundle file.
    pub path: PathBuf,
    /// SHA-256 of the bundle's contents (its trailing checksum), hex.
    pub sha256: String,
    /// Its labels, in order.
    pub labels: Vec<String>,
    /// The label that is the empty scene, when it has one (never an event, no entity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// Its numeric precision (`f32`, `q4`, …).
    pub precision: String,
}

impl ModelInfo {
    /// The running `model`, loaded from `path`.
    pub fn of(path: &Path, model: &Model) -> std::io::Result<ModelInfo> {
        Ok(ModelInfo {
            path: path.to_path_buf(),
            sha256: bundle_sha256(path)?,
            labels: model.labels().to_vec(),
            background: model
                .background_label()
                .and_then(|i| model.labels().get(i).cloned()),
            precision: format!("{:?}", model.header().precision).to_lowercase(),
        })
    }

    /// The index of the empty-scene label.
    pub fn background_index(&self) -> Option<usize> {
        let background = self.background.as_deref()?;
        self.labels.iter().position(|l| l == background)
    }
}

/// The report of the running bundle, as `watch --json` prints it and `BASE/model` carries it: what it is,
/// what happened to it, and at which frame (the last one classified before; 0 at start).
pub fn model_report(info: &ModelInfo, event: &ModelEvent, frame: u64) -> serde_json::Value {
    let mut report = serde_json::json!({"frame": frame});
    for value in [serde_json::json!(info), serde_json::json!(event)] {
        if let (Some(report), Some(fields)) = (report.as_object_mut(), value.as_object()) {
            report.extend(fields.clone());
        }
    }
    report
}

/// What the running sinks need of a new bundle's labels. Without these, a bundle may bring other labels:
/// their events end, the sinks are told ([`super::Sink::model`]) and follow by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelNeeds {
    /// Labels an action names (`--when`): the new bundle must have each, and not as its empty scene.
    pub named: Vec<String>,
    /// Label indices leave the process as numbers (`--serial`): a receiver maps them with a table of its own,
    /// so every running label keeps its index; new labels may only come after them.
    pub keep_indices: bool,
}

impl LabelNeeds {
    /// Why the `new` bundle's labels cannot replace `running`'s here, in one line; `Ok` when they can.
    pub fn check(&self, running: &ModelInfo, new: &ModelInfo) -> Result<(), String> {
        for name in &self.named {
            if !new.labels.contains(name) {
                return Err(format!(
                    "it has no label {name:?}, which --when acts on (its labels: {}); restart watch with another --when",
                    new.labels.join(", ")
                ));
            }
            if new.background.as_ref() == Some(name) {
                return Err(format!(
                    "its label {name:?}, which --when acts on, is its empty scene and never fires"
                ));
            }
        }
        if self.keep_indices && !new.labels.starts_with(&running.labels) {
            return Err(format!(
                "its labels ({}) do not keep the running ones' numbers ({}), which --serial sends: add new labels after them, or restart watch and update the receiver",
                new.labels.join(", "),
                running.labels.join(", ")
            ));
        }
        Ok(())
    }
}

/// The labels the new bundle has and the running one has not, and the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelDiff {
    /// Labels only the new bundle has.
    pub added: Vec<String>,
    /// Labels only the running bundle had: their events ended at the switch.
    pub removed: Vec<String>,
}

impl LabelDiff {
    fn between(running: &[String], new: &[String]) -> LabelDiff {
        let only =
            |a: &[String], b: &[String]| a.iter().filter(|l| !b.contains(l)).cloned().collect();
        LabelDiff {
            added: only(new, running),
            removed: only(running, new),
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The bundle's own checksum: its last 32 bytes are the SHA-256 of the rest (checked when it is loaded).
pub fn bundle_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut checksum = [0u8; 32];
    file.seek(SeekFrom::End(-32))?;
    file.read_exact(&mut checksum)?;
    Ok(checksum.iter().map(|b| format!("{b:02x}")).collect())
}

/// Why a bundle was loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The bundle file was replaced.
    File,
    /// A bundle published to the fleet over MQTT (`lookout publish`).
    Mqtt,
}

/// A bundle to load that is not (yet) the running bundle's file: one received over MQTT, put together in a file
/// of its own. It replaces the bundle file only once accepted, so a restart runs the last accepted bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRequest {
    /// The received file.
    pub path: PathBuf,
    /// The SHA-256 of the whole file its publisher announced, hex.
    pub file_sha256: String,
}

/// Where requests wait for the reload thread: the newest replaces one not yet taken.
pub type ReloadRequests = Arc<Mutex<Option<ReloadRequest>>>;

/// A new bundle run over the frames `watch` recently saw, before it is switched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SelfTest {
    /// Frames classified (each zone of each).
    pub frames: usize,
    /// Of those, how many the new bundle answers differently from the running one (a label, unknown, nothing).
    pub changed: usize,
}

/// What happened to the running bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum ModelEvent {
    /// `watch` started with it.
    Start,
    /// It replaced the bundle that ran before.
    Switch {
        /// What asked for it.
        trigger: Trigger,
        /// The bundle that ran before.
        previous_sha256: String,
        /// Its self-test.
        self_test: SelfTest,
        /// Loading and self-testing it, milliseconds (the camera kept running meanwhile).
        load_ms: f64,
        /// Labels added and removed (absent when they are the same).
        #[serde(skip_serializing_if = "LabelDiff::is_empty")]
        labels_changed: LabelDiff,
    },
    /// A new bundle was refused; the running one goes on.
    Refused {
        /// What asked for it.
        trigger: Trigger,
        /// The refused bundle's checksum, when it could be read.
        refused_sha256: Option<String>,
        /// Why, in one line.
        reason: String,
    },
}

/// A bundle loaded, checked and self-tested, ready to switch in; or why not.
pub(super) enum Reloaded {
    Ready {
        model: Box<Model>,
        info: ModelInfo,
        event: ModelEvent,
    },
    Refused(ModelEvent),
}

/// What was classified recently: a few frames, each with the running bundle's answer per region.
#[derive(Default)]
pub(super) struct RecentFrames {
    frames: VecDeque<(image::RgbImage, Vec<Answer>)>,
    last: Option<Instant>,
}

/// A frame's answer in one region, as far as a self-test compares: a label, unknown, or the empty scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Label(usize),
    Unknown,
    Nothing,
}

impl Answer {
    pub(super) fn of(prediction: &lookout_runtime::Prediction) -> Answer {
        if prediction.unknown {
            Answer::Unknown
        } else if prediction.background {
            Answer::Nothing
        } else {
            Answer::Label(prediction.label)
        }
    }

    /// The answer with its label's name, for comparing answers of bundles with other labels.
    fn named<'l>(&self, labels: &'l [String]) -> Result<&'l str, Answer> {
        match self {
            Answer::Label(i) => labels.get(*i).map(String::as_str).ok_or(*self),
            other => Err(*other),
        }
    }
}

impl RecentFrames {
    /// Frames kept for a self-test: enough to catch a bundle that fails on this camera's frames, few enough
    /// to hold (8 decoded 640×480 frames are 7 MB).
    const KEEP: usize = 8;
    /// Consecutive frames are nearly the same picture: keep at most one every so often.
    const EVERY: Duration = Duration::from_millis(500);

    /// Whether a frame classified now would be kept (so the loop decodes nothing extra when not).
    pub(super) fn wants(&self, now: Instant) -> bool {
        self.last.is_none_or(|last| now - last >= Self::EVERY)
    }

    pub(super) fn push(&mut self, now: Instant, image: image::RgbImage, answers: Vec<Answer>) {
        if self.frames.len() == Self::KEEP {
            self.frames.pop_front();
        }
        self.frames.push_back((image, answers));
        self.last = Some(now);
    }
}

/// Where and how the bundle is loaded again.
#[derive(Debug, Clone)]
pub struct ReloadOptions {
    /// The bundle file `watch` runs: replaced on disk, it is loaded again.
    pub path: PathBuf,
    /// How the running bundle was loaded (threads, weights, rejection): a new one is loaded the same way.
    pub runtime: RuntimeOptions,
    /// Set (by a SIGHUP handler) to load the bundle again; cleared when taken.
    pub signal: Arc<AtomicBool>,
    /// How often the file is looked at; a changed file is loaded once it has stayed the same for one look.
    pub poll: Duration,
    /// Bundles received over MQTT (see [`ReloadRequest`]).
    pub requests: ReloadRequests,
    /// What the running sinks need of a new bundle's labels.
    pub labels: LabelNeeds,
}

/// The thread that loads new bundles, and the loop's end of it.
pub struct Reloader {
    results: Receiver<Reloaded>,
    pub(super) recent: Arc<Mutex<RecentFrames>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The file's identity: a rename (a new inode) or a rewrite (length, time) changes it.
fn identity(path: &Path) -> Option<(u64, u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((inode, meta.len(), meta.modified().ok()?))
}

impl Reloader {
    /// Starts the thread for a pipeline classifying `regions` with the bundle `running`.
    pub fn spawn(options: ReloadOptions, running: ModelInfo, regions: Regions) -> Reloader {
        let (send, results) = mpsc::sync_channel(1);
        let recent = Arc::new(Mutex::new(RecentFrames::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (recent, stop) = (Arc::clone(&recent), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("reload".into())
                .spawn(move || watch_bundle(options, running, regions, recent, stop, send))
                .ok()
        };
        Reloader {
            results,
            recent,
            stop,
            thread,
        }
    }

    /// A bundle ready to switch in (or refused), if one is.
    pub(super) fn take(&self) -> Option<Reloaded> {
        self.results.try_recv().ok()
    }
}

fn watch_bundle(
    options: ReloadOptions,
    mut running: ModelInfo,
    regions: Regions,
    recent: Arc<Mutex<RecentFrames>>,
    stop: Arc<AtomicBool>,
    send: SyncSender<Reloaded>,
) {
    let mut loaded = identity(&options.path);
    let mut seen = loaded;
    let tick = Duration::from_millis(50);
    let mut next_look = Instant::now() + options.poll;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        let request = options.requests.lock().ok().and_then(|mut r| r.take());
        let trigger = if request.is_some() {
            Some(Trigger::Mqtt)
        } else if options.signal.swap(false, Ordering::SeqCst) {
            Some(Trigger::Signal)
        } else if Instant::now() >= next_look {
            next_look = Instant::now() + options.poll;
            let now = identity(&options.path);
            // Load once the file has stayed the same for one look: a copy still being written is not read.
            let settled = now.is_some() && now == seen && now != loaded;
            seen = now;
            settled.then_some(Trigger::File)
        } else {
            None
        };
        let Some(trigger) = trigger else { continue };
        let attempt = Attempt {
            options: &options,
            running: &running,
            regions: &regions,
            recent: &recent,
            trigger,
        };
        let reloaded = attempt.reload(request.as_ref());
        // What is on disk now is what was looked at (an accepted MQTT bundle was just renamed there).
        loaded = identity(&options.path);
        seen = loaded;
        if let Reloaded::Ready { info, .. } = &reloaded {
            running = info.clone();
        }
        // The loop takes one result per frame; a camera that stalled must not pile bundles up here, and a loop
        // that ended (the Reloader joins this thread as it drops) must not leave this send waiting forever.
        let mut waiting = reloaded;
        loop {
            match send.try_send(waiting) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if !stop.load(Ordering::SeqCst) => {
                    waiting = back;
                    std::thread::sleep(tick);
                }
                Err(_) => return,
            }
        }
    }
}

/// One try at a new bundle: what it is checked against, and why it was asked for.
struct Attempt<'a> {
    options: &'a ReloadOptions,
    running: &'a ModelInfo,
    regions: &'a Regions,
    recent: &'a Mutex<RecentFrames>,
    trigger: Trigger,
}

impl Attempt<'_> {
    /// Loads, checks and self-tests the bundle at `options.path` (or the received one of `request`) against
    /// the running one; a received bundle that is accepted then replaces the bundle file, one refused is
    /// removed.
    fn reload(&self, request: Option<&ReloadRequest>) -> Reloaded {
        let options = self.options;
        let path = request.map_or(options.path.as_path(), |r| r.path.as_path());
        let reloaded = self.load_and_test(path, request);
        let Some(request) = request else {
            return reloaded;
        };
        match reloaded {
            Reloaded::Ready {
                model,
                mut info,
                event,
            } => match std::fs::rename(&request.path, &options.path) {
                Ok(()) => {
                    info.path.clone_from(&options.path);
                    Reloaded::Ready { model, info, event }
                }
                Err(e) => Reloaded::Refused(ModelEvent::Refused {
                    trigger: self.trigger,
                    refused_sha256: Some(info.sha256),
                    reason: format!("cannot put it in place of {}: {e}", options.path.display()),
                }),
            },
            refused => {
                let _ = std::fs::remove_file(&request.path);
                refused
            }
        }
    }

    fn load_and_test(&self, path: &Path, request: Option<&ReloadRequest>) -> Reloaded {
        let (options, running, regions, recent, trigger) = (
            self.options,
            self.running,
            self.regions,
            self.recent,
            self.trigger,
        );
        let started = Instant::now();
        let refused_sha256 = bundle_sha256(path).ok();
        let refuse = |reason: String| {
            Reloaded::Refused(ModelEvent::Refused {
                trigger,
                refused_sha256: refused_sha256.clone(),
                reason,
            })
        };
        if let Some(request) = request {
            // Never load bytes other than the ones announced (a half-received or tampered transfer).
            let received =
                std::fs::read(path).map(|bytes| lookout_fleet::protocol::sha256_hex(&bytes));
            match received {
                Ok(sha) if sha == request.file_sha256 => {}
                Ok(sha) => {
                    return refuse(
                        lookout_fleet::FleetError::Checksum {
                            announced: request.file_sha256.clone(),
                            received: sha,
                        }
                        .to_string(),
                    )
                }
                Err(e) => return refuse(format!("{}: {e}", path.display())),
            }
        }
        let mut model = match Model::load(path, &options.runtime) {
            Ok(model) => model,
            Err(e) => return refuse(format!("{}: {e}", path.display())),
        };
        let info = match ModelInfo::of(path, &model) {
            Ok(info) => info,
            Err(e) => return refuse(format!("{}: {e}", path.display())),
        };
        if let Err(reason) = options.labels.check(running, &info) {
            return refuse(reason);
        }
        let frames: Vec<(image::RgbImage, Vec<Answer>)> = match recent.lock() {
            Ok(recent) => recent.frames.iter().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let zones = match regions {
            Regions::Frame(region) => vec![*region],
            Regions::Zones(zones) => zones.iter().map(|z| z.region).collect(),
        };
        let mut self_test = SelfTest::default();
        for (i, (image, answers)) in frames.iter().enumerate() {
            for (region, before) in zones.iter().zip(answers) {
                let crop = (!region.is_full()).then(|| region.crop(image));
                match model.classify(crop.as_ref().unwrap_or(image)) {
                    Ok(prediction) => {
                        self_test.frames += 1;
                        // By name: the new bundle may number its labels otherwise.
                        let after = Answer::of(&prediction);
                        self_test.changed +=
                            usize::from(after.named(&info.labels) != before.named(&running.labels));
                    }
                    Err(e) => {
                        return refuse(format!(
                            "self-test on recent frame {} of {}: {e}",
                            i + 1,
                            frames.len()
                        ))
                    }
                }
            }
        }
        Reloaded::Ready {
            model: Box::new(model),
            event: ModelEvent::Switch {
                trigger,
                previous_sha256: running.sha256.clone(),
                self_test,
                load_ms: crate::stats::round3(crate::stats::ms(started.elapsed())),
                labels_changed: LabelDiff::between(&running.labels, &info.labels),
            },
            info,
        }
    }
}

#[cfg(test)]
mod tests;

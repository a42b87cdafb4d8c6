//! A whole extraction: an ImageFolder in, a features cache out ([`extract_folder`]): scan, split, reuse a
//! cache whose inputs are identical, resume an interrupted one shard by shard, write the manifest last.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::ProgressBar;
use lookout_models::download::hex;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::cache::{
    self, AugmentInfo, Manifest, ShardInfo, Split, SplitConfig, ViewShard, ViewsRecord, FORMAT_TAG,
    FORMAT_TAG_1,
};
use super::error::FeaturesError;
use super::extractor::{ExtractError, ExtractOptions, FeatureExtractor, StageTimes};
use super::shard::{self, ShardData};
use super::views;
use super::{BackboneRecord, FeatureRecipe};
use crate::dataset::{ImageFolder, SkippedFile, SplitEntry};
use crate::transform::AugmentPolicy;
use lookout_models::backbone::Backbone;

/// Images per shard file: bounds memory (a shard being computed and one being written) and the work an
/// interruption loses.
pub const DEFAULT_SHARD_SIZE: usize = 256;
/// Name of the file recording which inputs the shards in a directory belong to (for resuming).
const FINGERPRINT_FILE: &str = ".lookout-extract-fingerprint";

/// A whole extraction: data folder in, features cache out.
#[derive(Debug, Clone)]
pub struct ExtractJob {
    /// The ImageFolder.
    pub data_dir: PathBuf,
    /// Frames of the camera's empty scene (`--background DIR`): one more class, the background.
    pub background_dir: Option<PathBuf>,
    /// The cache directory to write.
    pub out_dir: PathBuf,
    /// Fraction of each class for the test split.
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Rebuild even if a matching cache exists.
    pub force: bool,
    /// Images per shard file.
    pub shard_size: usize,
    /// How to run the backbone.
    pub options: ExtractOptions,
    /// Augmented views of the training images (`--augment K`); none when `None` or 0 views.
    pub augment: Option<AugmentJob>,
}

/// `--augment K [--augment-policy SPEC]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentJob {
    /// Views per training image, besides the clean one.
    pub views: u32,
    /// How each view is drawn.
    pub policy: AugmentPolicy,
}

/// What an extraction did.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    /// The cache directory.
    pub out_dir: PathBuf,
    /// True when an existing complete cache with identical inputs was reused.
    pub reused: bool,
    /// Shards kept from an interrupted run.
    pub resumed_shards: usize,
    /// Shards computed by this run.
    pub computed_shards: usize,
    /// Images that gave features, per split.
    pub train_images: usize,
    /// Images of the test split that gave features.
    pub test_images: usize,
    /// Images run through the backbone by this run (excludes reused/resumed ones; augmented views count in
    /// `processed_views`).
    pub processed_images: usize,
    /// Augmented views per training image in the cache.
    pub views: u32,
    /// Augmented views run through the backbone by this run.
    pub processed_views: usize,
    /// Files that gave no features, with why.
    pub skipped: Vec<SkippedFile>,
    /// Non-image files ignored.
    pub ignored_non_images: usize,
    /// Wall time of this run, seconds.
    pub seconds: f64,
    /// Backbone runs (images and views) per second of wall time.
    pub images_per_second: f64,
    /// Per-stage time, summed over workers.
    pub stages: StageTimes,
    /// Device the model ran on.
    pub device: String,
    /// Why `--device auto` fell back to the CPU.
    pub device_note: Option<String>,
    /// Images per model call.
    pub batch: usize,
    /// Shape of one image's features.
    pub feature_shape: Vec<usize>,
    /// Class names.
    pub classes: Vec<String>,
}

/// How images are decoded for the backbone, part of the cache's fingerprint.
const DECODE_TAG: &str =
    "decode: JPEG scaled by 1/2, 1/4 or 1/8 where the recipe keeps no more detail (views: their smallest crop)";

/// Hash of every input that determines the cache contents.
fn fingerprint(
    folder: &ImageFolder,
    lists: &[(Split, &[SplitEntry])],
    backbone: &Backbone,
    job: &ExtractJob,
    cut: Option<&str>,
) -> String {
    let stats: HashMap<&Path, (u64, u128)> = folder
        .samples
        .iter()
        .map(|s| (s.rel_path.as_path(), (s.size, s.mtime_ns)))
        .collect();
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    // The shards' format: format 2 changed only the manifest's layout, so caches of format 1 stay reusable.
    put(FORMAT_TAG_1);
    // Large JPEGs are decoded smaller where the recipe keeps no more detail (`image_io::decode_file_for`):
    // features of a cache made before would differ from what the edge computes for the same photo.
    put(DECODE_TAG);
    put(&folder.root.to_string_lossy());
    for c in &folder.classes {
        put(c);
    }
    put(&format!("background {:?}", folder.background));
    for (split, list) in lists {
        put(split.name());
        for (rel, class) in *list {
            let (size, mtime) = stats.get(rel.as_path()).copied().unwrap_or_default();
            put(&format!("{}\t{class}\t{size}\t{mtime}", rel.display()));
        }
    }
    for bad in &folder.bad_files {
        put(&bad.path.to_string_lossy());
    }
    put(&backbone.sha256);
    put(&serde_json::to_string(&backbone.preprocess).unwrap_or_default());
    put(cut.unwrap_or(""));
    put(job.options.pool.as_str());
    put(&job.seed.to_string());
    put(&job.test_fraction.to_bits().to_string());
    put(&job.shard_size.to_string());
    hex(&h.finalize())
}

/// Is `dir` holding a complete cache for exactly these inputs?
fn reusable(dir: &Path, fingerprint: &str) -> Option<Manifest> {
    let manifest = Manifest::read(dir).ok()?;
    let files_present = manifest.shards.iter().all(|s| dir.join(&s.file).is_file())
        && Split::ALL.iter().all(|s| s.list_path(dir).is_file());
    (manifest.complete && manifest.fingerprint == fingerprint && files_present).then_some(manifest)
}

/// Removes shard files (`train-*.safetensors`, `test-*.safetensors`) left by a run with other inputs.
fn remove_stale_shards(dir: &Path) -> Result<(), FeaturesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FeaturesError::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| FeaturesError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_shard = (name.starts_with("train-") || name.starts_with("test-"))
            && name.ends_with(".safetensors");
        if is_shard {
            std::fs::remove_file(&path).map_err(|e| FeaturesError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Runs a whole extraction (scan, split, resume or reuse, shards, manifest). `progress` gets its length set
/// and is advanced per image; pass `ProgressBar::hidden()` for none.
pub fn extract_folder(
    job: &ExtractJob,
    backbone: &Backbone,
    progress: &ProgressBar,
) -> Result<ExtractReport, ExtractError> {
    let started = Instant::now();
    let folder = ImageFolder::scan_with_background(&job.data_dir, job.background_dir.as_deref())?;
    let lists = folder.split(job.test_fraction, job.seed)?;
    let split_lists: [(Split, &[SplitEntry]); 2] =
        [(Split::Train, &lists.train), (Split::Test, &lists.test)];
    let cut = job
        .options
        .cut
        .clone()
        .or_else(|| backbone.feature_node.clone());
    let fp = fingerprint(&folder, &split_lists, backbone, job, cut.as_deref());
    let out = &job.out_dir;
    let mut report = ExtractReport::empty(out, &folder);
    let wanted_views = job
        .augment
        .as_ref()
        .filter(|a| a.views > 0)
        .map(|a| AugmentInfo {
            views: a.views,
            policy: a.policy.to_string(),
            seed: job.seed,
        });

    if !job.force {
        if let Some(manifest) = reusable(out, &fp)
            .filter(|m| m.views.as_ref().map(|v| &v.info) == wanted_views.as_ref())
        {
            report.views = wanted_views.as_ref().map_or(0, |v| v.views);
            report.reused = true;
            report.train_images = manifest.count(Split::Train);
            report.test_images = manifest.count(Split::Test);
            report.skipped = manifest.skipped;
            report.feature_shape = manifest.recipe.feature_shape;
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
    }
    let resume = prepare_cache_dir(out, &fp, job.force)?;
    for (split, list) in &split_lists {
        cache::write_split_list(&split.list_path(out), list)?;
    }

    let extractor = FeatureExtractor::new(backbone, &job.options)?;
    let feature_shape = extractor.feature_shape().to_vec();
    let view_count = wanted_views.as_ref().map_or(0, |v| v.views as usize);
    progress.set_length((lists.train.len() * (1 + view_count) + lists.test.len()) as u64);
    let mut shards = Vec::new();
    let mut skipped: Vec<SkippedFile> = folder.bad_files.clone();
    // Each computed shard is written on a thread of its own while the next one is computed: the write (64 MB and
    // an fsync for an unpooled Lite0 shard) otherwise left every core idle, 8 % of an extraction's wall time.
    // One write at a time, so at most two shards are in memory.
    std::thread::scope(|scope| -> Result<(), ExtractError> {
        let mut writing: Option<std::thread::ScopedJoinHandle<'_, Result<(), FeaturesError>>> =
            None;
        let finish =
            |writing: &mut Option<std::thread::ScopedJoinHandle<'_, Result<(), FeaturesError>>>| {
                match writing.take() {
                    Some(write) => Ok(write.join().map_err(|_| ExtractError::WorkerPanicked)??),
                    None => Ok::<(), ExtractError>(()),
                }
            };
        for (split, list) in &split_lists {
            let shard_size = job.shard_size.max(1);
            for (k, first) in (0..list.len()).step_by(shard_size).enumerate() {
                let range = ShardRange {
                    split: *split,
                    number: k,
                    first,
                    end: (first + shard_size).min(list.len()),
                };
                let (count, shard_skipped) = match resume
                    .then(|| kept_shard(out, &range, &feature_shape))
                    .flatten()
                {
                    Some(data) => {
                        report.resumed_shards += 1;
                        progress.inc((range.end - range.first) as u64);
                        (data.labels.len(), data.skipped)
                    }
                    None => {
                        let data = compute_shard(&extractor, &folder, list, &range, progress)?;
                        report.computed_shards += 1;
                        report.processed_images += range.end - range.first;
                        let summary = (data.labels.len(), data.skipped.clone());
                        finish(&mut writing)?;
                        let path = out.join(range.file_name());
                        let shape = &feature_shape;
                        writing =
                            Some(scope.spawn(move || shard::write_shard(&path, shape, &data)));
                        summary
                    }
                };
                skipped.extend(shard_skipped);
                shards.push(ShardInfo {
                    file: range.file_name(),
                    split: *split,
                    count,
                    first: range.first,
                    end: range.end,
                });
            }
        }
        finish(&mut writing)
    })?;

    let views_record = match (&wanted_views, &job.augment) {
        (Some(info), Some(augment)) => {
            let tag = views::views_tag(info, &fp);
            views::remove_other_views(out, &tag)?;
            let context = ViewsContext {
                out_dir: out,
                extractor: &extractor,
                folder: &folder,
                list: &lists.train,
                tag: &tag,
                policy: &augment.policy,
                seed: job.seed,
                feature_shape: &feature_shape,
            };
            let shards = context.compute(
                &shards,
                info.views,
                resume,
                progress,
                &mut report.processed_views,
            )?;
            Some(ViewsRecord {
                info: info.clone(),
                tag,
                shards,
            })
        }
        _ => None,
    };
    report.views = view_count as u32;

    let manifest = Manifest {
        format: FORMAT_TAG.to_string(),
        lookout_version: env!("CARGO_PKG_VERSION").to_string(),
        complete: true,
        classes: folder.classes.clone(),
        background: folder.background,
        data_root: folder.root.clone(),
        recipe: FeatureRecipe {
            backbone: BackboneRecord::of(backbone, cut),
            preprocess: backbone.preprocess.clone(),
            feature_shape: feature_shape.clone(),
            pooling: job.options.pool,
        },
        split: SplitConfig {
            seed: job.seed,
            test_fraction: job.test_fraction,
        },
        shard_size: job.shard_size.max(1),
        shards,
        skipped: skipped.clone(),
        ignored_non_images: folder.ignored_non_images,
        fingerprint: fp,
        views: views_record,
    };
    cache::write_skipped_list(out, &skipped)?;
    manifest.write(out)?;

    report.train_images = manifest.count(Split::Train);
    report.test_images = manifest.count(Split::Test);
    report.skipped = skipped;
    report.finish(started, &extractor, feature_shape);
    Ok(report)
}

impl ExtractReport {
    /// Fills in the timings and the device once the shards are written.
    fn finish(
        &mut self,
        started: Instant,
        extractor: &FeatureExtractor,
        feature_shape: Vec<usize>,
    ) {
        self.seconds = started.elapsed().as_secs_f64();
        self.images_per_second =
            (self.processed_images + self.processed_views) as f64 / self.seconds.max(1e-9);
        self.stages = extractor.stage_times();
        self.device = extractor.device_name().to_string();
        self.device_note = extractor.device_note().map(str::to_string);
        self.batch = extractor.batch();
        self.feature_shape = feature_shape;
    }

    fn empty(out: &Path, folder: &ImageFolder) -> Self {
        ExtractReport {
            out_dir: out.to_path_buf(),
            reused: false,
            resumed_shards: 0,
            computed_shards: 0,
            train_images: 0,
            test_images: 0,
            processed_images: 0,
            views: 0,
            processed_views: 0,
            skipped: Vec::new(),
            ignored_non_images: folder.ignored_non_images,
            seconds: 0.0,
            images_per_second: 0.0,
            stages: StageTimes::default(),
            device: String::new(),
            device_note: None,
            batch: 0,
            feature_shape: Vec::new(),
            classes: folder.classes.clone(),
        }
    }
}

/// Positions `first..end` of a split's file list: shard `number` of that split.
struct ShardRange {
    split: Split,
    number: usize,
    first: usize,
    end: usize,
}

impl ShardRange {
    fn file_name(&self) -> String {
        self.split.shard_file_name(self.number)
    }
}

/// Makes `out` ready for shards: removes the manifest first (a cache without one is never mistaken for a
/// complete one), and the shards of other inputs. Returns whether shards already there may be kept.
fn prepare_cache_dir(out: &Path, fingerprint: &str, force: bool) -> Result<bool, FeaturesError> {
    std::fs::create_dir_all(out.join(cache::SPLITS_DIR)).map_err(|e| FeaturesError::io(out, e))?;
    let manifest = out.join(cache::MANIFEST_FILE);
    match std::fs::remove_file(&manifest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(FeaturesError::io(manifest, e))
        }
        _ => {}
    }
    let fp_path = out.join(FINGERPRINT_FILE);
    let same_inputs = std::fs::read_to_string(&fp_path).is_ok_and(|s| s.trim() == fingerprint);
    let resume = same_inputs && !force;
    if !resume {
        remove_stale_shards(out)?;
        lookout_shared::atomic::write_atomic(&fp_path, fingerprint.as_bytes())?;
    }
    Ok(resume)
}

/// A shard an interrupted run of the same inputs left, if it is whole and covers exactly `range`.
fn kept_shard(out: &Path, range: &ShardRange, feature_shape: &[usize]) -> Option<ShardData> {
    kept_view(&out.join(range.file_name()), range, feature_shape)
}

/// Runs the backbone over the images of `range`; files that give no features are listed with why.
fn compute_shard(
    extractor: &FeatureExtractor,
    folder: &ImageFolder,
    list: &[SplitEntry],
    range: &ShardRange,
    progress: &ProgressBar,
) -> Result<ShardData, ExtractError> {
    let entries = &list[range.first..range.end];
    let paths: Vec<PathBuf> = entries
        .iter()
        .map(|(rel, _)| folder.root.join(rel))
        .collect();
    let outcomes = extractor.extract_files(&paths, progress)?;
    let mut data = ShardData::default();
    for (offset, (outcome, (rel, class))) in outcomes.into_iter().zip(entries).enumerate() {
        match outcome {
            Ok(f) => {
                data.features.extend_from_slice(&f);
                data.labels.push(*class);
                data.index.push((range.first + offset) as u32);
            }
            Err(reason) => data.skipped.push(SkippedFile {
                path: rel.clone(),
                reason,
            }),
        }
    }
    Ok(data)
}

/// What computing the view shards of the training split needs.
struct ViewsContext<'a> {
    out_dir: &'a Path,
    extractor: &'a FeatureExtractor,
    folder: &'a ImageFolder,
    list: &'a [SplitEntry],
    tag: &'a str,
    policy: &'a AugmentPolicy,
    seed: u64,
    feature_shape: &'a [usize],
}

impl ViewsContext<'_> {
    /// For each clean training shard, views `1..=views`: kept when an earlier run of the same policy left them
    /// whole, computed otherwise (every missing view of a range in one pass, each image decoded once).
    fn compute(
        &self,
        clean: &[ShardInfo],
        views: u32,
        resume: bool,
        progress: &ProgressBar,
        processed: &mut usize,
    ) -> Result<Vec<ViewShard>, ExtractError> {
        let out = self.out_dir;
        let mut records = Vec::new();
        for (k, shard) in clean.iter().filter(|s| s.split == Split::Train).enumerate() {
            let range = ShardRange {
                split: Split::Train,
                number: k,
                first: shard.first,
                end: shard.end,
            };
            let mut kept: Vec<(u32, ShardData)> = Vec::new();
            let mut missing: Vec<u32> = Vec::new();
            for view in 1..=views {
                let name = views::view_file_name(self.tag, view, k);
                match resume
                    .then(|| kept_view(&out.join(&name), &range, self.feature_shape))
                    .flatten()
                {
                    Some(data) => {
                        progress.inc((range.end - range.first) as u64);
                        kept.push((view, data));
                    }
                    None => missing.push(view),
                }
            }
            if !missing.is_empty() {
                let entries = &self.list[range.first..range.end];
                let paths: Vec<PathBuf> = entries
                    .iter()
                    .map(|(rel, _)| self.folder.root.join(rel))
                    .collect();
                let keys: Vec<String> = entries
                    .iter()
                    .map(|(rel, _)| rel.to_string_lossy().replace('\\', "/"))
                    .collect();
                let labels: Vec<u32> = entries.iter().map(|(_, class)| *class).collect();
                let outcomes = self.extractor.extract_views(
                    &paths,
                    &keys,
                    &missing,
                    self.policy,
                    self.seed,
                    progress,
                )?;
                *processed += entries.len() * missing.len();
                for (view, data) in missing.iter().zip(views::view_shards(
                    outcomes,
                    range.first,
                    &labels,
                    missing.len(),
                )) {
                    shard::write_shard(
                        &out.join(views::view_file_name(self.tag, *view, k)),
                        self.feature_shape,
                        &data,
                    )?;
                    kept.push((*view, data));
                }
            }
            kept.sort_by_key(|(view, _)| *view);
            for (view, data) in kept {
                records.push(ViewShard {
                    file: views::view_file_name(self.tag, view, k),
                    view,
                    count: data.labels.len(),
                    first: range.first,
                    end: range.end,
                });
            }
        }
        Ok(records)
    }
}

/// A (clean or view) shard an earlier run left at `path`, if it is whole and covers exactly `range`.
fn kept_view(path: &Path, range: &ShardRange, feature_shape: &[usize]) -> Option<ShardData> {
    if !path.is_file() {
        return None;
    }
    shard::read_shard(path, feature_shape).ok().filter(|d| {
        d.index
            .iter()
            .all(|&i| (range.first..range.end).contains(&(i as usize)))
    })
}

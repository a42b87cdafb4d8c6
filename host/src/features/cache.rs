//! The features cache: what `lookout extract` writes and `lookout train` reads.
//!
//! A cache is a directory:
//!
//! ```text
//! manifest.json            format tag "lookout-features/2", classes, recipe (backbone, preprocess, shapes), shards
//! splits/train.txt         relative/path<TAB>class_index, one line per image of the split (the split's file list)
//! splits/test.txt
//! train-00000.safetensors  tensors `features` f32 [n, ...feature_shape], `labels` u32 [n], `index` u32 [n]
//! test-00000.safetensors   (`index` = position of the row's image in the split's file list)
//! skipped.txt              relative/path<TAB>reason, one line per file that gave no features
//! ```
//!
//! Shard `k` of a split covers the positions `k·shard_size .. (k+1)·shard_size` of the split's file list, so an
//! interrupted extraction resumes by redoing only the missing shards. Every file is written atomically (temp
//! file in the same directory, then rename) and the manifest is written last, with `complete: true`.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use lookout_shared::atomic::write_atomic;
use serde::{Deserialize, Serialize};

use super::error::{FeaturesError, ShardError};
use super::shard::{read_shard, ShardData};
use super::{FeatureRecipe, FeatureRows};
use crate::dataset::{SkippedFile, SplitEntry};

/// The format tag in `manifest.json`; bumped on any incompatible change. 2: the backbone, preprocessing, feature
/// shape and pooling in one `recipe` object ([`FeatureRecipe`]).
pub const FORMAT_TAG: &str = "lookout-features/2";
/// The format before `recipe`, still read ([`FeatureRecipe::nest_flat_fields`]); its shards are today's.
pub const FORMAT_TAG_1: &str = "lookout-features/1";
/// Name of the manifest inside a cache directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the list of files that gave no features.
pub const SKIPPED_FILE: &str = "skipped.txt";
/// Sub-directory holding the split file lists.
pub const SPLITS_DIR: &str = "splits";

/// One of the two splits of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training split.
    Train,
    /// The held-out test split.
    Test,
}

impl Split {
    /// Both splits, train first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// File name of shard number `k` of this split.
    pub fn shard_file_name(self, k: usize) -> String {
        format!("{}-{k:05}.safetensors", self.name())
    }

    /// Path of this split's file list inside a cache directory.
    pub fn list_path(self, dir: &Path) -> PathBuf {
        dir.join(SPLITS_DIR).join(format!("{}.txt", self.name()))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the data set was split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Seed of the per-class shuffle.
    pub seed: u64,
    /// Fraction of every class that goes to the test split.
    pub test_fraction: f64,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the cache directory.
    pub file: String,
    /// Which split it belongs to.
    pub split: Split,
    /// Number of feature rows (images that decoded).
    pub count: usize,
    /// First position in the split's file list that this shard covers.
    pub first: usize,
    /// One past the last position covered.
    pub end: usize,
}

/// Augmented views as asked for, and as the manifest records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentInfo {
    /// Views per training image (besides the clean one).
    pub views: u32,
    /// The policy spec, e.g. `crop=0.6,flip,…` ([`crate::transform::AugmentPolicy`]'s text form).
    pub policy: String,
    /// Seed of the views (the split's seed).
    pub seed: u64,
}

/// The manifest's record of the views in a cache: what was asked and the shard files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsRecord {
    /// Views, policy, seed.
    #[serde(flatten)]
    pub info: AugmentInfo,
    /// Hash of policy, seed and the clean cache's fingerprint: in every view shard's name.
    pub tag: String,
    /// The view shards: `views` per clean training shard, view-major within each range.
    pub shards: Vec<ViewShard>,
}

/// One view shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewShard {
    /// File name inside the cache directory.
    pub file: String,
    /// View number, from 1.
    pub view: u32,
    /// Rows (images of the range that decoded).
    pub count: usize,
    /// First position of the training list covered.
    pub first: usize,
    /// One past the last.
    pub end: usize,
}

/// `manifest.json`: everything needed to trust and reuse a features cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_TAG`].
    pub format: String,
    /// Version of lookout that wrote the cache.
    pub lookout_version: String,
    /// True once every shard is written; a cache without it is being (or was being) written.
    pub complete: bool,
    /// Class names; label `i` is `classes[i]` (sorted folder names, then the background's when there is one).
    pub classes: Vec<String>,
    /// The index of the background class (the camera's empty scene, `--background DIR`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<u32>,
    /// The data directory the split lists are relative to (absolute).
    pub data_root: PathBuf,
    /// How an image became a row: backbone, preprocessing, feature shape and pooling.
    pub recipe: FeatureRecipe,
    /// How the data set was split.
    pub split: SplitConfig,
    /// Maximum number of images per shard.
    pub shard_size: usize,
    /// The shards, train first, in order.
    pub shards: Vec<ShardInfo>,
    /// Files that gave no features.
    pub skipped: Vec<SkippedFile>,
    /// Non-image files found in the class folders and ignored.
    pub ignored_non_images: usize,
    /// Hash of every input of the extraction (data listing, model, preprocessing, options): equal → reusable.
    pub fingerprint: String,
    /// Augmented views of the training images, when extracted with `--augment K`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<ViewsRecord>,
}

impl Manifest {
    /// Number of f32 values per image.
    pub fn feature_dim(&self) -> usize {
        self.recipe.feature_shape.iter().product()
    }

    /// Number of feature rows in a split.
    pub fn count(&self, split: Split) -> usize {
        self.shards
            .iter()
            .filter(|s| s.split == split)
            .map(|s| s.count)
            .sum()
    }

    /// Reads `dir/manifest.json` (complete or not) and checks its format tag.
    pub fn read(dir: &Path) -> Result<Manifest, FeaturesError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FeaturesError::NoManifest { path: path.clone() }
            } else {
                FeaturesError::io(&path, e)
            }
        })?;
        // Check the tag before the full schema, so an old/new format says so instead of "missing field".
        let mut json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| FeaturesError::BadManifest {
                path: path.clone(),
                source,
            })?;
        let found = json.get("format").and_then(|f| f.as_str()).unwrap_or("");
        match found {
            FORMAT_TAG => {}
            FORMAT_TAG_1 => FeatureRecipe::nest_flat_fields(&mut json),
            _ => {
                return Err(FeaturesError::UnsupportedFormat {
                    path,
                    found: found.to_string(),
                    expected: FORMAT_TAG,
                })
            }
        }
        let mut manifest: Manifest = serde_json::from_value(json)
            .map_err(|source| FeaturesError::BadManifest { path, source })?;
        // Read in today's layout, it is written back in it.
        manifest.format = FORMAT_TAG.to_string();
        Ok(manifest)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), FeaturesError> {
        let path = dir.join(MANIFEST_FILE);
        let json =
            serde_json::to_vec_pretty(self).map_err(|source| FeaturesError::BadManifest {
                path: path.clone(),
                source,
            })?;
        Ok(write_atomic(&path, &json)?)
    }
}

/// A complete features cache opened for reading.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// The cache directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// All feature rows of one split, in file-list order, with the image each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitFeatures {
    /// The rows and their labels.
    pub rows: FeatureRows,
    /// Absolute path of the image of every row.
    pub paths: Vec<PathBuf>,
    /// Position of every row's image in the split's file list (what augmented views are keyed by).
    pub positions: Vec<u32>,
}

impl FeatureSet {
    /// Opens a cache written by `lookout extract`; fails if it is incomplete.
    pub fn open(dir: impl AsRef<Path>) -> Result<FeatureSet, FeaturesError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir)?;
        if !manifest.complete {
            return Err(FeaturesError::Incomplete { dir });
        }
        Ok(FeatureSet { dir, manifest })
    }

    /// The image and label of every row of a split, in [`FeatureSet::load_split`]'s order, without keeping
    /// the features (one shard in memory at a time).
    pub fn split_index(&self, split: Split) -> Result<(Vec<PathBuf>, Vec<u32>), FeaturesError> {
        let (mut paths, mut labels) = (Vec::new(), Vec::new());
        self.for_each_shard(split, |data, shard_paths| {
            paths.extend(shard_paths);
            labels.extend_from_slice(&data.labels);
        })?;
        Ok((paths, labels))
    }

    /// Reads the split's shards in order and calls `each` with every shard and the image of each of its rows;
    /// checks each shard against the manifest and the split list.
    fn for_each_shard(
        &self,
        split: Split,
        mut each: impl FnMut(ShardData, Vec<PathBuf>),
    ) -> Result<(), FeaturesError> {
        let list = read_split_list(&split.list_path(&self.dir))?;
        for shard in self.manifest.shards.iter().filter(|s| s.split == split) {
            let path = self.dir.join(&shard.file);
            let data = read_shard(&path, &self.manifest.recipe.feature_shape)?;
            if data.labels.len() != shard.count {
                return Err(FeaturesError::BadShard {
                    path,
                    source: ShardError::Inconsistent(format!(
                        "{} rows, the manifest says {}",
                        data.labels.len(),
                        shard.count
                    )),
                });
            }
            let paths = data
                .index
                .iter()
                .map(|&pos| {
                    list.get(pos as usize)
                        .map(|entry| self.manifest.data_root.join(&entry.0))
                        .ok_or_else(|| FeaturesError::BadShard {
                            path: path.clone(),
                            source: ShardError::Inconsistent(format!(
                                "index {pos} is past the end of the split list"
                            )),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            each(data, paths);
        }
        Ok(())
    }

    /// Loads every row of a split into memory.
    pub fn load_split(&self, split: Split) -> Result<SplitFeatures, FeaturesError> {
        let dim = self.manifest.feature_dim();
        let total = self.manifest.count(split);
        let mut features = Vec::with_capacity(total * dim);
        let mut labels = Vec::with_capacity(total);
        let mut paths = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        self.for_each_shard(split, |data, shard_paths| {
            paths.extend(shard_paths);
            positions.extend_from_slice(&data.index);
            labels.extend_from_slice(&data.labels);
            features.extend_from_slice(&data.features);
        })?;
        let rows =
            FeatureRows::new(features, labels, dim).map_err(|e| FeaturesError::BadShard {
                path: self.dir.clone(),
                source: ShardError::Inconsistent(e.to_string()),
            })?;
        Ok(SplitFeatures {
            rows,
            paths,
            positions,
        })
    }
}

/// Writes a split file list (`relative/path<TAB>class_index` lines) atomically.
pub fn write_split_list(path: &Path, entries: &[SplitEntry]) -> Result<(), FeaturesError> {
    let mut text = String::new();
    for (rel, class) in entries {
        text.push_str(&portable_path(rel));
        text.push('\t');
        text.push_str(&class.to_string());
        text.push('\n');
    }
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Reads a split file list.
pub fn read_split_list(path: &Path) -> Result<Vec<SplitEntry>, FeaturesError> {
    let file = std::fs::File::open(path).map_err(|e| FeaturesError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| FeaturesError::io(path, e))?;
        if line.is_empty() {
            continue;
        }
        let bad = |reason: &str| FeaturesError::BadSplitList {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let (rel, class) = line
            .rsplit_once('\t')
            .ok_or_else(|| bad("no TAB between path and class index"))?;
        let class = class
            .parse::<u32>()
            .map_err(|_| bad("class index is not a number"))?;
        out.push((PathBuf::from(rel), class));
    }
    Ok(out)
}

/// Writes `skipped.txt` (`relative/path<TAB>reason` lines) atomically.
pub fn write_skipped_list(dir: &Path, skipped: &[SkippedFile]) -> Result<(), FeaturesError> {
    let mut text = String::new();
    for s in skipped {
        text.push_str(&portable_path(&s.path));
        text.push('\t');
        // One line per file: a reason never spans lines.
        text.push_str(&s.reason.replace(['\n', '\t'], " "));
        text.push('\n');
    }
    Ok(write_atomic(&dir.join(SKIPPED_FILE), text.as_bytes())?)
}

/// Relative paths are stored with `/` so a cache reads the same on every OS.
fn portable_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

//! Augmented views in the features cache: K extra feature rows per training image, each the backbone's
//! features of one random view ([`crate::transform::AugmentPolicy`]), computed once at extraction and cached
//! beside the clean rows in the same shard format.
//!
//! View `v` of training shard `k` is the file `train-aug-<tag>-v<v>-<k>.safetensors`, covering the same
//! positions of the split list as the clean shard `k`. The tag hashes the policy, the seed and the clean
//! cache's fingerprint, not K: asking for 8 views after 4 computes only views 5 to 8, and another policy
//! never mixes with this one's files. The test split is never augmented.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use lookout_models::download::hex;
use sha2::{Digest, Sha256};

use super::cache::{AugmentInfo, FeatureSet, SplitFeatures};
use super::error::{FeaturesError, ShardError};
use super::extractor::{ExtractError, FeatureExtractor};
use super::rows::FeatureRows;
use super::shard::{read_shard, ShardData};
use crate::transform::AugmentPolicy;

/// The tag of a policy and seed over a clean cache.
pub fn views_tag(info: &AugmentInfo, clean_fingerprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(info.policy.as_bytes());
    h.update(info.seed.to_le_bytes());
    h.update(clean_fingerprint.as_bytes());
    hex(&h.finalize())[..12].to_string()
}

/// File name of view `view` of training shard `k`.
pub fn view_file_name(tag: &str, view: u32, k: usize) -> String {
    format!("train-aug-{tag}-v{view}-{k:05}.safetensors")
}

/// Removes view shards whose tag is not `keep` (another policy or seed).
pub fn remove_other_views(dir: &Path, keep: &str) -> Result<(), FeaturesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FeaturesError::io(dir, e))?;
    let mine = format!("train-aug-{keep}-");
    for entry in entries {
        let path = entry.map_err(|e| FeaturesError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("train-aug-") && !name.starts_with(&mine) {
            std::fs::remove_file(&path).map_err(|e| FeaturesError::io(&path, e))?;
        }
    }
    Ok(())
}

/// One image's views: features of each, or why the image gave none.
type ViewOutcome = Result<Vec<Vec<f32>>, String>;

impl FeatureExtractor {
    /// Views `views` of each file: decoded once, each view drawn by `policy` (keyed by the file's path in
    /// the data set, `keys`) and run through the backbone; `progress` advances once per backbone run.
    pub fn extract_views(
        &self,
        paths: &[PathBuf],
        keys: &[String],
        views: &[u32],
        policy: &AugmentPolicy,
        seed: u64,
        progress: &ProgressBar,
    ) -> Result<Vec<ViewOutcome>, ExtractError> {
        let items: Vec<(&PathBuf, &String)> = paths.iter().zip(keys).collect();
        self.par_map_with_workers(&items, |worker, &(path, key)| {
            let image = match policy.decode_photo(path, worker.preprocess_spec()) {
                Ok(image) => image,
                Err(e) => {
                    progress.inc(views.len() as u64);
                    return Ok(Err(e.kind.to_string()));
                }
            };
            let mut out = Vec::with_capacity(views.len());
            for &view in views {
                let augmented = match policy.view(&image, key, view, seed) {
                    Ok(a) => a,
                    Err(e) => {
                        progress.inc(1);
                        return Ok(Err(e.to_string()));
                    }
                };
                out.push(worker.extract_image(&augmented)?);
                progress.inc(1);
            }
            Ok(Ok(out))
        })
    }
}

/// Splits per-image view outcomes into one shard's data per view.
pub fn view_shards(
    outcomes: Vec<ViewOutcome>,
    first: usize,
    labels: &[u32],
    views: usize,
) -> Vec<ShardData> {
    let mut shards = vec![ShardData::default(); views];
    for (offset, (outcome, &label)) in outcomes.into_iter().zip(labels).enumerate() {
        // An image that does not decode is already listed as skipped by the clean shard.
        if let Ok(features) = outcome {
            for (shard, f) in shards.iter_mut().zip(features) {
                shard.features.extend_from_slice(&f);
                shard.labels.push(label);
                shard.index.push((first + offset) as u32);
            }
        }
    }
    shards
}

impl FeatureSet {
    /// Views per training image in this cache (0 without augmentation).
    pub fn view_count(&self) -> usize {
        self.manifest
            .views
            .as_ref()
            .map_or(0, |v| v.info.views as usize)
    }

    /// The augmented views of the training split, one [`FeatureRows`] per view, row for row aligned with
    /// `clean` (what [`FeatureSet::load_split`]`(Split::Train)` loaded; a row whose view is missing gets its
    /// clean features).
    pub fn load_views(&self, clean: &SplitFeatures) -> Result<Vec<FeatureRows>, FeaturesError> {
        let Some(record) = &self.manifest.views else {
            return Ok(Vec::new());
        };
        let rows = &clean.rows;
        let dim = self.manifest.feature_dim().max(1);
        let mut out = Vec::with_capacity(record.info.views as usize);
        for view in 1..=record.info.views {
            // Every row of this view, by the position of its image in the split list.
            let mut shards = Vec::new();
            for shard in record.shards.iter().filter(|v| v.view == view) {
                shards.push(read_shard(
                    &self.dir.join(&shard.file),
                    &self.manifest.recipe.feature_shape,
                )?);
            }
            let by_position: HashMap<u32, &[f32]> = shards
                .iter()
                .flat_map(|d| d.index.iter().copied().zip(d.features.chunks_exact(dim)))
                .collect();
            let mut features = Vec::with_capacity(rows.features.len());
            for (row, position) in clean.positions.iter().enumerate() {
                match by_position.get(position) {
                    Some(f) => features.extend_from_slice(f),
                    None => features.extend_from_slice(rows.row(row)),
                }
            }
            out.push(
                FeatureRows::new(features, rows.labels.clone(), rows.dim).map_err(|e| {
                    FeaturesError::BadShard {
                        path: self.dir.clone(),
                        source: ShardError::Inconsistent(e.to_string()),
                    }
                })?,
            );
        }
        Ok(out)
    }
}

//! Rejecting what is none of the classes.
//!
//! A head trained on cats and dogs calls a tench, a carousel or an empty room "Cat" or "Dog", most of them
//! with near-certainty: its probabilities only compare the classes it knows. What tells "none of these" is how
//! far an image's backbone features are from every training image. The score here is k-nearest-neighbour
//! cosine distance (Sun et al. 2022, k = 1): the image's globally pooled backbone features, L2-normalised,
//! against a bank of normalised training features; `score = 1 − max cosine similarity`. It was chosen over the
//! head's own confidence, the max logit and a Mahalanobis distance by measuring all four on real photos
//! (`lookout evaluate --ood`, figures in docs/rejection.md).
//!
//! The bank is bounded: a greedy k-centre coreset (farthest-point sampling) of at most `bank` training images,
//! so its size does not grow with the data set. The threshold is calibrated on the head's validation split,
//! which the bank never saw: the score under which `keep` of those images fall. When the features have
//! augmented views (camera-like: dim, blurred, noisy), the bank is drawn from the training photos *and* their
//! views, and the threshold calibrated on the validation photos and theirs: a degraded frame of a class then
//! finds a degraded neighbour instead of needing a looser threshold, which would also let in more photos of
//! other things (measured on the fixed-camera scene: docs/camera.md). In the exported graph the
//! bank is one constant matrix and the score one matmul and a max (see `bundle::graph`).

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::pooling::global_average_pool;
use crate::head::net::argmax;

/// The name of the score, as run.json and the bundle header record it.
pub const KNN_COSINE: &str = "knn-cosine";
/// File of the bank inside a run directory.
pub const UNKNOWN_FILE: &str = "unknown.safetensors";

/// Settings of the rejection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UnknownConfig {
    /// Fraction of held-out in-distribution images the threshold keeps (the rest are wrongly rejected);
    /// `None`: [`UnknownConfig::KEEP_PHOTOS`], or [`UnknownConfig::KEEP_WITH_VIEWS`] with views.
    pub keep: Option<f32>,
    /// Largest number of training images in the bank.
    pub bank: usize,
    /// Use the augmented views too (when the features have views): the bank is drawn from the training photos
    /// and their views, and the threshold keeps `keep` of the validation photos *as a camera delivers them*
    /// (dim, blurred, noisy, off-centre), not only of clean photos.
    #[serde(default)]
    pub on_views: bool,
}

impl Default for UnknownConfig {
    fn default() -> Self {
        // A 256-photo coreset rejects as well as the whole training split (AUROC 0.9995 against 0.9986 on
        // cats-vs-dogs with EfficientNet-Lite0, docs/rejection.md) at a fifth of the size.
        UnknownConfig {
            keep: None,
            bank: 256,
            on_views: true,
        }
    }
}

impl UnknownConfig {
    /// What the threshold keeps of clean validation photos by default. Measured on cats-vs-dogs with
    /// EfficientNet-Lite0 (docs/rejection.md): 0.97 on 160 validation photos keeps ≥ 95 % of the test photos
    /// (0.95 kept 92.5 %: a quantile of 160 photos is that noisy).
    pub const KEEP_PHOTOS: f32 = 0.97;
    /// What it keeps of the validation photos and their views by default, when there are views. Measured
    /// (docs/camera.md): on the fixed-camera scene 0.97, 0.98 and 0.99 accepted the same photos of other
    /// things (1.4 %), while 0.98 kept 96.0 % of the test photos under camera conditions against 95.0 % at
    /// 0.97; on cats-vs-dogs with either augmentation policy 0.98 kept 1 point more of the held-out views
    /// than 0.97 for one more of 216 other photos accepted, and 0.99 let in twice as many. Calibration on
    /// five times the rows (the photos' views) makes the higher quantile as steady as 0.97 of photos alone.
    pub const KEEP_WITH_VIEWS: f32 = 0.98;

    /// The fraction the threshold keeps, calibrated with views or without.
    pub fn keep(&self, with_views: bool) -> f32 {
        self.keep.unwrap_or(if with_views {
            UnknownConfig::KEEP_WITH_VIEWS
        } else {
            UnknownConfig::KEEP_PHOTOS
        })
    }
}

/// Why no detector could be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnknownError {
    /// Nothing to calibrate on.
    #[error(
        "rejection of unknown images needs a validation split to calibrate on (--val-split above 0), or \
         --no-unknown"
    )]
    NoValidation,
    /// A setting is out of range.
    #[error("--unknown-keep must be above 0 and at most 1, not {0}")]
    Keep(f32),
    /// The rows cannot be pooled into vectors.
    #[error("cannot pool features of shape {0:?} into vectors")]
    Shape(Vec<usize>),
}

/// The fitted rejection: a bank of normalised training features and the calibrated threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownDetector {
    /// `[bank_size, dim]`, row-major, each row of unit length.
    pub bank: Vec<f32>,
    /// Length of one pooled feature vector.
    pub dim: usize,
    /// Scores above this are unknown.
    pub threshold: f32,
    /// What the threshold was calibrated to keep.
    pub keep: f32,
    /// Validation rows the threshold was calibrated on (photos and, when calibrated on them, their views).
    pub calibrated_on: usize,
    /// Of `calibrated_on`, how many were augmented views.
    pub calibrated_on_views: usize,
    /// Of the bank's rows, how many are augmented views of training photos (the rest are photos).
    pub bank_views: usize,
    /// Where each bank row came from (empty when not known: runs written before it was recorded), so that an
    /// export whose weights move the features can compute the bank again from the same images.
    pub sources: Vec<BankSource>,
}

/// The image a bank row is the features of: a training row, and which of its views (0: the photo itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BankSource {
    /// The row: its index in the rows given to [`UnknownDetector::fit_with_views`] until
    /// [`UnknownDetector::locate_sources`] maps it to the training split.
    pub row: usize,
    /// 0 for the photo, `v` for its augmented view `v`.
    pub view: u32,
}

/// Globally pooled, L2-normalised features of rows cached with `shape` (`[C, H, W]` maps are averaged over
/// space; `[C]` rows are used as they are): the space the score measures in. `[n, C]` row-major.
pub fn normalized_rows(
    features: &[f32],
    shape: &[usize],
) -> Result<(Vec<f32>, usize), UnknownError> {
    let len: usize = shape.iter().product();
    let dim = match shape {
        [c] | [c, _, _] => *c,
        _ => return Err(UnknownError::Shape(shape.to_vec())),
    };
    if len == 0 || !features.len().is_multiple_of(len) {
        return Err(UnknownError::Shape(shape.to_vec()));
    }
    let out: Vec<f32> = features
        .par_chunks(len)
        .flat_map_iter(|row| {
            let mut pooled = global_average_pool(row, shape);
            normalize(&mut pooled);
            pooled
        })
        .collect();
    Ok((out, dim))
}

/// Scales `v` to unit length (a zero vector stays zero: it is then far from everything).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Indices of at most `m` rows of `rows` (`[n, dim]`, unit length) that cover the rest best: greedy
/// farthest-point sampling from row 0 (Gonzalez's 2-approximation of the k-centre problem).
pub fn coreset(rows: &[f32], dim: usize, m: usize) -> Vec<usize> {
    let n = rows.len() / dim.max(1);
    if n <= m {
        return (0..n).collect();
    }
    let first = &rows[..dim];
    let nearest: Vec<f32> = rows
        .chunks_exact(dim)
        .map(|r| 1.0 - dot(r, first))
        .collect();
    let mut chosen = vec![0usize];
    chosen.extend(farthest_points(
        rows,
        dim,
        nearest,
        m - 1,
        f32::NEG_INFINITY,
    ));
    chosen.sort_unstable();
    chosen
}

/// Indices of at most `m` rows of `rows` (`[n, dim]`, unit length) that `bank` (unit length) does not cover
/// within cosine distance `radius`, farthest first, each one covering its neighbours before the next is
/// chosen: the greedy k-centre sampling of [`coreset`], continued from `bank` and stopped at `radius`.
pub fn uncovered(bank: &[f32], rows: &[f32], dim: usize, radius: f32, m: usize) -> Vec<usize> {
    let nearest: Vec<f32> = rows
        .par_chunks_exact(dim.max(1))
        .map(|r| knn_cosine_score(bank, dim, r))
        .collect();
    let mut chosen = farthest_points(rows, dim, nearest, m, radius);
    chosen.sort_unstable();
    chosen
}

/// Greedy farthest-point sampling: `nearest` holds each row's cosine distance to what is chosen so far; picks
/// at most `m` rows while the farthest is beyond `radius`.
fn farthest_points(
    rows: &[f32],
    dim: usize,
    mut nearest: Vec<f32>,
    m: usize,
    radius: f32,
) -> Vec<usize> {
    let mut chosen = Vec::new();
    while chosen.len() < m {
        let far = argmax(&nearest);
        if nearest.get(far).is_none_or(|&d| d <= radius) {
            break;
        }
        chosen.push(far);
        let new = &rows[far * dim..(far + 1) * dim];
        nearest
            .par_iter_mut()
            .zip(rows.par_chunks_exact(dim))
            .for_each(|(d, r)| *d = d.min(1.0 - dot(r, new)));
    }
    chosen
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `keep` quantile of `scores`: the smallest threshold with at least `keep` of them at or under it.
pub fn quantile_threshold(scores: &[f32], keep: f32) -> f32 {
    let mut sorted = scores.to_vec();
    sorted.sort_by(f32::total_cmp);
    if sorted.is_empty() {
        return f32::INFINITY;
    }
    let rank = ((keep as f64 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// 1 − the largest cosine similarity of `x` (unit length) to the rows of `bank` (unit length).
pub fn knn_cosine_score(bank: &[f32], dim: usize, x: &[f32]) -> f32 {
    let best = bank
        .chunks_exact(dim.max(1))
        .map(|b| dot(b, x))
        .fold(f32::NEG_INFINITY, f32::max);
    1.0 - best
}

impl UnknownDetector {
    /// Builds the bank from `train` and calibrates the threshold on `valid` (both `[n, dim]` normalised).
    pub fn fit(
        train: &[f32],
        valid: &[f32],
        dim: usize,
        config: &UnknownConfig,
    ) -> Result<Self, UnknownError> {
        UnknownDetector::fit_with_views(train, &[], valid, &[], dim, config)
    }

    /// [`UnknownDetector::fit`] with augmented views (`[n, dim]` normalised): the bank is a coreset of `train`
    /// and then the views of `train_views` it does not cover as closely as it covers the photos (at most
    /// `config.bank` more); the threshold keeps `keep` of `valid` and `valid_views` together. So a photo as a
    /// camera delivers it is kept about as often as a clean one, without loosening the threshold for
    /// everything else; views an augmentation leaves near their photos add nothing to the bank.
    pub fn fit_with_views(
        train: &[f32],
        train_views: &[f32],
        valid: &[f32],
        valid_views: &[f32],
        dim: usize,
        config: &UnknownConfig,
    ) -> Result<Self, UnknownError> {
        let keep = config.keep(!(train_views.is_empty() && valid_views.is_empty()));
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(UnknownError::Keep(keep));
        }
        if valid.is_empty() {
            return Err(UnknownError::NoValidation);
        }
        let rows_of = |rows: &[f32], picks: &[usize]| -> Vec<f32> {
            picks
                .iter()
                .flat_map(|&i| rows[i * dim..(i + 1) * dim].iter().copied())
                .collect()
        };
        let photo_picks = coreset(train, dim, config.bank.max(1));
        let mut bank = rows_of(train, &photo_picks);
        let mut sources: Vec<BankSource> = photo_picks
            .iter()
            .map(|&row| BankSource { row, view: 0 })
            .collect();
        let mut bank_views = 0;
        if !train_views.is_empty() {
            // How far the farthest training photo is from the bank: views farther than that are what the
            // photos do not represent (a dim, noisy or blurred frame), and join the bank.
            let radius = train
                .par_chunks_exact(dim)
                .map(|r| knn_cosine_score(&bank, dim, r))
                .reduce(|| f32::NEG_INFINITY, f32::max);
            let picks = uncovered(&bank, train_views, dim, radius, config.bank.max(1));
            bank_views = picks.len();
            bank.extend(rows_of(train_views, &picks));
            // The views are view-major over the same rows (view 1 of each, then view 2, …); otherwise where a
            // view came from is not known.
            let photos = train.len() / dim;
            if photos > 0 && train_views.len().is_multiple_of(train.len()) {
                sources.extend(picks.iter().map(|&i| BankSource {
                    row: i % photos,
                    view: (i / photos + 1) as u32,
                }));
            } else {
                sources.clear();
            }
        }
        let mut detector = UnknownDetector {
            bank,
            dim,
            threshold: f32::INFINITY,
            keep,
            calibrated_on: (valid.len() + valid_views.len()) / dim,
            calibrated_on_views: valid_views.len() / dim,
            bank_views,
            sources,
        };
        let mut scores = detector.scores(valid);
        scores.extend(detector.scores(valid_views));
        detector.threshold = quantile_threshold(&scores, keep);
        Ok(detector)
    }

    /// Maps each source's row from the rows given to `fit_with_views` to the training split: `positions[i]`
    /// is where row `i` is in the split. Forgets the sources if a row is not in `positions`.
    pub fn locate_sources(&mut self, positions: &[usize]) {
        let located: Option<Vec<BankSource>> = self
            .sources
            .iter()
            .map(|s| {
                positions
                    .get(s.row)
                    .map(|&row| BankSource { row, view: s.view })
            })
            .collect();
        self.sources = located.unwrap_or_default();
    }

    /// Number of training images in the bank.
    pub fn bank_size(&self) -> usize {
        self.bank.len() / self.dim.max(1)
    }

    /// Scores of normalised rows `[n, dim]`.
    pub fn scores(&self, rows: &[f32]) -> Vec<f32> {
        rows.par_chunks(self.dim.max(1))
            .map(|x| knn_cosine_score(&self.bank, self.dim, x))
            .collect()
    }

    /// Writes the bank as `dir/unknown.safetensors` (tensor `bank`, f32 `[bank_size, dim]`).
    pub fn save_bank(&self, dir: &Path) -> Result<(), UnknownFileError> {
        let bytes: Vec<u8> = self.bank.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![self.bank_size(), self.dim],
            &bytes,
        )?;
        let sources: Vec<u8> = self
            .sources
            .iter()
            .flat_map(|s| [s.row as u32, s.view])
            .flat_map(u32::to_le_bytes)
            .collect();
        let mut tensors = vec![("bank", view)];
        if !self.sources.is_empty() {
            tensors.push((
                "sources",
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::U32,
                    vec![self.sources.len(), 2],
                    &sources,
                )?,
            ));
        }
        let encoded = safetensors::serialize(tensors, None)?;
        lookout_shared::atomic::write_atomic(&dir.join(UNKNOWN_FILE), &encoded)?;
        Ok(())
    }

    /// Reads the bank written by [`UnknownDetector::save_bank`], with the record's threshold.
    pub fn load(dir: &Path, record: &UnknownRecord) -> Result<Self, UnknownFileError> {
        let path = dir.join(UNKNOWN_FILE);
        let bytes = std::fs::read(&path).map_err(|source| UnknownFileError::Read {
            path: path.clone(),
            source,
        })?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes)?;
        let bank = tensors.tensor("bank")?;
        let shape = bank.shape().to_vec();
        if bank.dtype() != safetensors::Dtype::F32 || shape != [record.bank_size, record.dim] {
            return Err(UnknownFileError::Shape {
                path,
                shape,
                expected: vec![record.bank_size, record.dim],
            });
        }
        // Older runs have no sources; a damaged or mismatched tensor only costs them too.
        let sources = match tensors.tensor("sources") {
            Ok(t) if t.dtype() == safetensors::Dtype::U32 && t.shape() == [record.bank_size, 2] => {
                t.data()
                    .chunks_exact(8)
                    .map(|b| BankSource {
                        row: u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                        view: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(UnknownDetector {
            sources,
            bank: bank
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            dim: record.dim,
            threshold: record.threshold,
            keep: record.keep,
            calibrated_on: record.calibrated_on,
            calibrated_on_views: record.calibrated_on_views,
            bank_views: record.bank_views,
        })
    }

    /// What run.json records of this detector.
    pub fn record(&self) -> UnknownRecord {
        UnknownRecord {
            method: KNN_COSINE.to_string(),
            threshold: self.threshold,
            keep: self.keep,
            bank_size: self.bank_size(),
            dim: self.dim,
            calibrated_on: self.calibrated_on,
            calibrated_on_views: self.calibrated_on_views,
            bank_views: self.bank_views,
        }
    }
}

/// run.json's record of the rejection (the bank itself is in `unknown.safetensors`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownRecord {
    /// The score ([`KNN_COSINE`]).
    pub method: String,
    /// Scores above this are unknown.
    pub threshold: f32,
    /// What the threshold was calibrated to keep.
    pub keep: f32,
    /// Rows of the bank.
    pub bank_size: usize,
    /// Length of one pooled feature vector.
    pub dim: usize,
    /// Validation rows the threshold was calibrated on (photos and views).
    pub calibrated_on: usize,
    /// Of those, augmented views of the validation photos (0 in runs written before camera calibration).
    #[serde(default)]
    pub calibrated_on_views: usize,
    /// Of the bank's rows, augmented views of training photos (0 in runs written before the bank held views).
    #[serde(default)]
    pub bank_views: usize,
}

/// The bank file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum UnknownFileError {
    /// Not a safetensors file, or a damaged one.
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] lookout_shared::atomic::WriteError),
    /// Reading failed.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bank does not have the shape run.json says.
    #[error("{}: the bank is {shape:?}, run.json says {expected:?}", path.display())]
    Shape {
        /// The file.
        path: std::path::PathBuf,
        /// Its shape.
        shape: Vec<usize>,
        /// run.json's.
        expected: Vec<usize>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize(&mut v);
        v
    }

    #[test]
    fn score_is_one_minus_the_nearest_cosine() {
        let bank = [unit(&[1.0, 0.0]), unit(&[0.0, 1.0])].concat();
        assert!(knn_cosine_score(&bank, 2, &unit(&[1.0, 0.0])).abs() < 1e-6);
        let diagonal = knn_cosine_score(&bank, 2, &unit(&[1.0, 1.0]));
        assert!((diagonal - (1.0 - 0.5f32.sqrt())).abs() < 1e-6);
        assert!(
            (knn_cosine_score(&bank, 2, &unit(&[-1.0, -1.0])) - (1.0 + 0.5f32.sqrt())).abs() < 1e-6
        );
    }

    #[test]
    fn quantile_keeps_the_asked_fraction() {
        let scores: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(quantile_threshold(&scores, 0.95), 95.0);
        assert_eq!(quantile_threshold(&scores, 1.0), 100.0);
        assert_eq!(quantile_threshold(&scores, 0.001), 1.0);
        let kept = scores.iter().filter(|&&s| s <= 95.0).count();
        assert_eq!(kept, 95);
    }

    #[test]
    fn coreset_picks_the_spread_out_points() {
        // Three tight clusters of four: a 3-point coreset takes one from each.
        let mut rows = Vec::new();
        for centre in [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] {
            for k in 0..4 {
                let jitter = 0.01 * k as f32;
                rows.extend(unit(&[centre[0] + jitter, centre[1] + jitter, centre[2]]));
            }
        }
        let picks = coreset(&rows, 3, 3);
        let clusters: Vec<usize> = picks.iter().map(|i| i / 4).collect();
        assert_eq!(clusters, vec![0, 1, 2]);
        assert_eq!(coreset(&rows, 3, 20).len(), 12, "a small set is kept whole");
    }

    #[test]
    fn pooled_rows_are_unit_length_channel_means() {
        // Two [2, 1, 2] maps.
        let (rows, dim) =
            normalized_rows(&[3.0, 5.0, 0.0, 0.0, 0.0, 0.0, 1.0, 3.0], &[2, 1, 2]).unwrap();
        assert_eq!(dim, 2);
        assert_eq!(rows, vec![1.0, 0.0, 0.0, 1.0]);
        assert!(normalized_rows(&[1.0; 8], &[2, 2, 1, 1]).is_err());
    }

    #[test]
    fn the_threshold_keeps_the_validation_images_and_rejects_the_far_ones() {
        let mut train = Vec::new();
        let mut valid = Vec::new();
        for i in 0..200 {
            let a = i as f32 * 0.003;
            let row = unit(&[1.0, a, 0.0]);
            if i % 5 == 0 {
                valid.extend(row);
            } else {
                train.extend(row);
            }
        }
        let config = UnknownConfig {
            keep: Some(0.9),
            bank: 16,
            on_views: false,
        };
        let detector = UnknownDetector::fit(&train, &valid, 3, &config).unwrap();
        assert_eq!(detector.bank_size(), 16);
        let kept = detector
            .scores(&valid)
            .iter()
            .filter(|&&s| s <= detector.threshold)
            .count();
        assert!(kept >= 36, "{kept} of 40 kept");
        let far = detector.scores(&unit(&[0.0, 0.0, 1.0]));
        assert!(far[0] > detector.threshold);
        assert_eq!(
            UnknownDetector::fit(&train, &[], 3, &config).unwrap_err(),
            UnknownError::NoValidation
        );
    }

    #[test]
    fn calibrating_on_views_keeps_the_degraded_ones_the_clean_threshold_rejects() {
        // Training photos near the x axis; validation photos as clean (near it) and as a camera delivers them
        // (further off, as a blurred or dim frame's features are).
        let config = UnknownConfig {
            keep: Some(0.9),
            bank: 64,
            on_views: true,
        };
        let near =
            |i: usize, spread: f32| unit(&[1.0, spread * (i % 10) as f32, spread * (i % 7) as f32]);
        let train: Vec<f32> = (0..100).flat_map(|i| near(i, 0.01)).collect();
        let valid: Vec<f32> = (0..20).flat_map(|i| near(i + 3, 0.012)).collect();
        let views: Vec<f32> = (0..80).flat_map(|i| near(i, 0.05)).collect();
        let clean = UnknownDetector::fit(&train, &valid, 3, &config).unwrap();
        let camera =
            UnknownDetector::fit_with_views(&train, &[], &valid, &views, 3, &config).unwrap();
        assert_eq!(
            (camera.calibrated_on, camera.calibrated_on_views),
            (100, 80)
        );
        let kept = |d: &UnknownDetector| {
            d.scores(&views)
                .iter()
                .filter(|&&s| s <= d.threshold)
                .count()
        };
        assert!(
            kept(&clean) < 40,
            "clean calibration keeps {} of 80 views",
            kept(&clean)
        );
        assert!(
            kept(&camera) >= 70,
            "camera calibration keeps {} of 80 views",
            kept(&camera)
        );
        // Still far from what is none of the classes.
        assert!(camera.scores(&unit(&[0.0, 1.0, 0.0]))[0] > camera.threshold);
    }

    #[test]
    fn views_in_the_bank_keep_the_threshold_tight_for_other_things() {
        // Photos near x; a camera degrades them along y (views at x + t·y, t up to 0.5); another thing lies
        // off along z. Calibrated on the views with a bank of photos only, the threshold must stretch to the
        // most degraded view and lets the other thing in; with the views the photos do not cover in the bank,
        // it need not.
        let config = UnknownConfig {
            keep: Some(0.9),
            bank: 64,
            on_views: true,
        };
        let photo = |i: usize| unit(&[1.0, 0.002 * (i % 5) as f32, 0.002 * (i % 3) as f32]);
        let view = |i: usize, n: usize| unit(&[1.0, 0.5 * (i % n) as f32 / (n - 1) as f32, 0.0]);
        let train: Vec<f32> = (0..100).flat_map(photo).collect();
        let train_views: Vec<f32> = (0..100).flat_map(|i| view(i, 20)).collect();
        let valid: Vec<f32> = (0..20).flat_map(|i| photo(i + 1)).collect();
        let valid_views: Vec<f32> = (0..40).flat_map(|i| view(i, 17)).collect();
        let other = unit(&[1.0, 0.0, 0.3]);

        let photos_bank =
            UnknownDetector::fit_with_views(&train, &[], &valid, &valid_views, 3, &config).unwrap();
        let views_bank =
            UnknownDetector::fit_with_views(&train, &train_views, &valid, &valid_views, 3, &config)
                .unwrap();
        assert_eq!(photos_bank.bank_views, 0);
        assert!(
            views_bank.bank_views > 0 && views_bank.bank_views < views_bank.bank_size(),
            "{} of {} bank rows are views",
            views_bank.bank_views,
            views_bank.bank_size()
        );
        assert!(photos_bank.scores(&other)[0] <= photos_bank.threshold);
        assert!(
            views_bank.scores(&other)[0] > views_bank.threshold,
            "score {} against threshold {}",
            views_bank.scores(&other)[0],
            views_bank.threshold
        );
        // Views an augmentation leaves among the photos (here: the photos themselves) add nothing.
        let mild =
            UnknownDetector::fit_with_views(&train, &train, &valid, &valid_views, 3, &config)
                .unwrap();
        assert_eq!(mild.bank_views, 0);
        // And the validation photos and their degraded views are kept as calibrated (90 % of the 60).
        let kept = views_bank
            .scores(&[valid.clone(), valid_views.clone()].concat())
            .iter()
            .filter(|&&s| s <= views_bank.threshold)
            .count();
        assert!(kept >= 54, "{kept} of 60 kept");
    }
}

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
//! which the bank never saw: the score under which `keep` of those images fall. In the exported graph the
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
    /// Fraction of held-out in-distribution images the threshold keeps (the rest are wrongly rejected).
    pub keep: f32,
    /// Largest number of training images in the bank.
    pub bank: usize,
    /// Calibrate on the validation photos' augmented views too (when the features have views): the threshold
    /// then keeps `keep` of the photos *as a camera delivers them* (dim, blurred, noisy, off-centre), not only of
    /// clean photos.
    #[serde(default)]
    pub on_views: bool,
}

impl Default for UnknownConfig {
    fn default() -> Self {
        // Measured on cats-vs-dogs with EfficientNet-Lite0 (docs/rejection.md): 0.97 on 160 validation photos keeps ≥ 95 %
        // of the test photos (0.95 kept 92.5 %: a quantile of 160 photos is that noisy), and a 256-photo coreset
        // rejects as well as the whole training split (AUROC 0.9995 against 0.9986) at a fifth of the size.
        UnknownConfig {
            keep: 0.97,
            bank: 256,
            on_views: true,
        }
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
    if len == 0 || features.len() % len != 0 {
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
    let row = |i: usize| &rows[i * dim..(i + 1) * dim];
    let mut chosen = vec![0usize];
    // Cosine distance of every row to its nearest chosen row.
    let mut nearest: Vec<f32> = (0..n).map(|i| 1.0 - dot(row(i), row(0))).collect();
    while chosen.len() < m {
        let far = argmax(&nearest);
        chosen.push(far);
        let new = row(far);
        nearest.par_iter_mut().enumerate().for_each(|(i, d)| {
            *d = d.min(1.0 - dot(row(i), new));
        });
    }
    chosen.sort_unstable();
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
        UnknownDetector::fit_with_views(train, valid, &[], dim, config)
    }

    /// [`UnknownDetector::fit`], calibrated on `valid` and `valid_views` together (augmented views of the
    /// validation photos, `[n, dim]` normalised): the threshold keeps `keep` of all of them, so a photo as a
    /// camera delivers it is kept about as often as a clean one.
    pub fn fit_with_views(
        train: &[f32],
        valid: &[f32],
        valid_views: &[f32],
        dim: usize,
        config: &UnknownConfig,
    ) -> Result<Self, UnknownError> {
        if !(config.keep > 0.0 && config.keep <= 1.0) {
            return Err(UnknownError::Keep(config.keep));
        }
        if valid.is_empty() {
            return Err(UnknownError::NoValidation);
        }
        let picks = coreset(train, dim, config.bank.max(1));
        let bank: Vec<f32> = picks
            .iter()
            .flat_map(|&i| train[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let mut detector = UnknownDetector {
            bank,
            dim,
            threshold: f32::INFINITY,
            keep: config.keep,
            calibrated_on: (valid.len() + valid_views.len()) / dim,
            calibrated_on_views: valid_views.len() / dim,
        };
        let mut scores = detector.scores(valid);
        scores.extend(detector.scores(valid_views));
        detector.threshold = quantile_threshold(&scores, config.keep);
        Ok(detector)
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
        let encoded = safetensors::serialize([("bank", view)], None)?;
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
        Ok(UnknownDetector {
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
            keep: 0.9,
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
            keep: 0.9,
            bank: 64,
            on_views: true,
        };
        let near =
            |i: usize, spread: f32| unit(&[1.0, spread * (i % 10) as f32, spread * (i % 7) as f32]);
        let train: Vec<f32> = (0..100).flat_map(|i| near(i, 0.01)).collect();
        let valid: Vec<f32> = (0..20).flat_map(|i| near(i + 3, 0.012)).collect();
        let views: Vec<f32> = (0..80).flat_map(|i| near(i, 0.05)).collect();
        let clean = UnknownDetector::fit(&train, &valid, 3, &config).unwrap();
        let camera = UnknownDetector::fit_with_views(&train, &valid, &views, 3, &config).unwrap();
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
}

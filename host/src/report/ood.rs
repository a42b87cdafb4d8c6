//! How well a run tells its classes from everything else (`lookout evaluate --ood DIR`).
//!
//! In-distribution images are the run's test split (cached features); out-of-distribution ones are any folder
//! of photos that are none of the classes, run through the run's backbone exactly as extraction did. Every
//! candidate score is calibrated the same way the exported one is, on the head's validation split (the rows
//! `train` held out), to keep the same fraction; then measured on the test split (how many are kept) and on
//! the OOD photos (how many are wrongly accepted as a class), with the AUROC, which needs no threshold.
//!
//! The candidates (Lee et al. 2018; Sun et al. 2022; Liu et al. 2020):
//! - `max-probability`: 1 − the head's top class probability (what the head says of itself);
//! - `energy`: −log Σ exp(logits) (a sigmoid head's one logit z counts as the two logits [−z/2, z/2]);
//! - `mahalanobis`: the smallest class-conditional Mahalanobis distance of the pooled features, one shared
//!   covariance (shrunk towards its mean variance, so 1280 channels from 1400 photos stay invertible);
//! - `knn-cosine`: 1 − the cosine similarity to the nearest training image, over the whole training split, and
//!   over the coreset bank the run exports (what the Pi computes).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::mahalanobis::Mahalanobis;
use crate::dataset::SkippedFile;
use crate::features::{FeatureRows, FeatureSet, Split};
use crate::head::run::Run;
use crate::head::train::validation_split;
use crate::head::unknown::{
    knn_cosine_score, normalized_rows, quantile_threshold, UnknownConfig, UnknownDetector,
    KNN_COSINE,
};

/// One score, calibrated and measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreResult {
    /// The score's name.
    pub score: String,
    /// Its threshold, calibrated on the validation split to keep `keep` of it.
    pub threshold: f32,
    /// Fraction of the test photos it keeps (calls one of the classes).
    pub test_kept: f32,
    /// Accuracy of the head on the test photos it keeps.
    pub kept_accuracy: f32,
    /// Fraction of the out-of-distribution photos it accepts as one of the classes (lower is better).
    pub ood_accepted: f32,
    /// Area under the ROC curve of the score separating OOD photos from test photos (1 is perfect).
    pub auroc: f32,
}

/// What `evaluate --ood` measured.
#[derive(Debug, Clone, Serialize)]
pub struct OodReport {
    /// The fraction of validation photos every threshold keeps.
    pub keep: f32,
    /// Validation photos the thresholds were calibrated on.
    pub validation_images: usize,
    /// Test photos (all of the classes).
    pub test_images: usize,
    /// Out-of-distribution photos measured.
    pub ood_images: usize,
    /// Files of the OOD folder that are not usable images, with why.
    pub skipped: Vec<SkippedFile>,
    /// The run's own rejection (the one in its bundle), when it has one.
    pub exported: Option<ScoreResult>,
    /// The photos of other things the exported rejection (or the best candidate) finds most like the
    /// classes, most alike first, with their scores: where it is weakest.
    pub closest: Vec<(PathBuf, f32)>,
    /// Every candidate score, for comparison.
    pub candidates: Vec<ScoreResult>,
    /// Scores of the exported rejection (or the best candidate without one): test photos, then OOD photos, for
    /// the histogram.
    #[serde(skip)]
    pub histogram: (Vec<f32>, Vec<f32>, f32),
}

/// What can go wrong measuring.
#[derive(Debug, thiserror::Error)]
pub enum OodError {
    /// The features cache cannot be read.
    #[error(transparent)]
    Features(#[from] crate::features::FeaturesError),
    /// The OOD folder cannot be listed.
    #[error("{}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds no usable image.
    #[error("{} holds no image to measure", .0.display())]
    NoImages(PathBuf),
    /// The run's backbone cannot run.
    #[error("running the run's backbone: {0}")]
    Extract(#[from] crate::features::extractor::ExtractError),
    /// The backbone cannot be opened.
    #[error(transparent)]
    Backbone(#[from] lookout_models::BackboneError),
    /// The extracted rows do not fit together (a bug).
    #[error(transparent)]
    Rows(#[from] crate::features::RowsError),
    /// The features cannot be pooled.
    #[error(transparent)]
    Unknown(#[from] crate::head::unknown::UnknownError),
    /// The run's bank cannot be read.
    #[error(transparent)]
    UnknownFile(#[from] crate::head::unknown::UnknownFileError),
    /// The run has no validation split to calibrate on.
    #[error(
        "the run was trained without a validation split (--val-split 0): nothing to calibrate on"
    )]
    NoValidation,
}

/// Every image under `dir` (recursively, sorted, hidden entries skipped: `image_io::walk_images`), and the
/// files named like images that are not usable.
pub fn list_images(dir: &Path) -> Result<(Vec<PathBuf>, Vec<SkippedFile>), OodError> {
    let walked = lookout_shared::image_io::walk_images(dir)
        .map_err(|(path, source)| OodError::Folder { path, source })?;
    let mut images = Vec::new();
    let mut bad = Vec::new();
    for (path, problem) in walked {
        match problem {
            None => images.push(path),
            Some(reason) => bad.push(SkippedFile { path, reason }),
        }
    }
    Ok((images, bad))
}

/// Measures the run's rejection and every candidate score against the photos under `ood_dir`.
pub fn evaluate_ood(
    run: &Run,
    run_dir: &Path,
    features: &FeatureSet,
    ood_dir: &Path,
    keep: Option<f32>,
    progress: &indicatif::ProgressBar,
) -> Result<OodReport, OodError> {
    let exported = run.unknown_detector(run_dir)?;
    let keep = keep.or(exported.as_ref().map(|d| d.keep)).unwrap_or(0.95);
    let shape: &[usize] = &run.config.features.recipe.feature_shape;
    let train = features.load_split(Split::Train)?.rows;
    let test = features.load_split(Split::Test)?.rows;
    let (_, valid_idx) = validation_split(
        &train.labels,
        run.config.training.val_split,
        run.config.training.seed,
    );
    if valid_idx.is_empty() {
        return Err(OodError::NoValidation);
    }
    let valid = train.subset(&valid_idx);
    let bank_idx: Vec<usize> = (0..train.len())
        .filter(|i| valid_idx.binary_search(i).is_err())
        .collect();
    let bank_rows = train.subset(&bank_idx);

    let (paths, skipped) = list_images(ood_dir)?;
    let (ood, ood_paths) = extract_ood(run, &paths, progress)?;
    if ood.is_empty() {
        return Err(OodError::NoImages(ood_dir.to_path_buf()));
    }
    let test_right: Vec<bool> = logits(run, &test)
        .chunks(run.head.outputs().max(1))
        .zip(&test.labels)
        .map(|(l, &label)| run.predict(l) == label as usize)
        .collect();
    let sets = Sets {
        valid: &valid,
        test: &test,
        ood: &ood,
        test_right,
    };
    let mut candidates = Vec::new();
    let scorers: Vec<(&str, Scorer<'_>)> = vec![
        (
            "max-probability",
            Box::new(|rows| max_probability(run, rows)),
        ),
        ("energy", Box::new(|rows| energy(run, rows))),
        ("mahalanobis", {
            let fitted = Mahalanobis::fit(&bank_rows, shape, run.config.classes.len());
            Box::new(move |rows| fitted.scores(rows, shape))
        }),
        ("knn-cosine (whole training split)", {
            let (bank, dim) = normalized_rows(&bank_rows.features, shape)?;
            Box::new(move |rows| knn_scores(&bank, dim, rows, shape))
        }),
    ];
    let mut histogram = None;
    for (name, scorer) in &scorers {
        let (result, test_scores, ood_scores) = sets.measure(name, keep, scorer.as_ref());
        if *name == "knn-cosine (whole training split)" && exported.is_none() {
            histogram = Some((test_scores, ood_scores, result.threshold));
        }
        candidates.push(result);
    }
    let exported = match &exported {
        Some(detector) => {
            let scorer = |rows: &FeatureRows| detector_scores(detector, rows, shape);
            let (mut result, test_scores, ood_scores) = sets.measure(
                &format!(
                    "{KNN_COSINE} (exported: {} training images)",
                    detector.bank_size()
                ),
                keep,
                &scorer,
            );
            // The exported threshold is the run's own (calibrated at training, the same way).
            result.threshold = detector.threshold;
            let test_kept = test_scores
                .iter()
                .filter(|&&s| s <= detector.threshold)
                .count();
            let ood_kept = ood_scores
                .iter()
                .filter(|&&s| s <= detector.threshold)
                .count();
            result.test_kept = test_kept as f32 / test_scores.len().max(1) as f32;
            result.ood_accepted = ood_kept as f32 / ood_scores.len().max(1) as f32;
            if detector.calibrated_on_views > 0 || detector.bank_views > 0 {
                // The trade-off of the camera-like views: what `--unknown-clean` would have exported, a bank
                // of the training photos alone (as large), calibrated on the clean validation photos alone.
                let (photos, dim) = normalized_rows(&bank_rows.features, shape)?;
                let (valid_photos, _) = normalized_rows(&valid.features, shape)?;
                let config = UnknownConfig {
                    keep: Some(keep),
                    bank: detector.bank_size() - detector.bank_views,
                    on_views: false,
                };
                let photos_only = UnknownDetector::fit(&photos, &valid_photos, dim, &config)?;
                let (clean, _, _) = sets.measure(
                    &format!(
                        "{KNN_COSINE} (as --unknown-clean: {} photos, calibrated on photos)",
                        photos_only.bank_size()
                    ),
                    keep,
                    &|rows: &FeatureRows| detector_scores(&photos_only, rows, shape),
                );
                candidates.push(clean);
                result.score = format!(
                    "{KNN_COSINE} (exported: {} photos + {} views, calibrated on {} photos + {} views)",
                    detector.bank_size() - detector.bank_views,
                    detector.bank_views,
                    detector.calibrated_on - detector.calibrated_on_views,
                    detector.calibrated_on_views
                );
            }
            histogram = Some((test_scores, ood_scores, detector.threshold));
            Some(result)
        }
        None => None,
    };
    Ok(OodReport {
        keep,
        validation_images: valid.len(),
        test_images: test.len(),
        ood_images: ood.len(),
        skipped,
        exported,
        candidates,
        closest: closest(
            &ood_paths,
            &histogram.as_ref().map(|h| h.1.clone()).unwrap_or_default(),
        ),
        histogram: histogram.unwrap_or_default(),
    })
}

/// A candidate score over rows as cached.
type Scorer<'a> = Box<dyn Fn(&FeatureRows) -> Vec<f32> + Sync + 'a>;

/// The rows a score is calibrated and measured on.
struct Sets<'a> {
    valid: &'a FeatureRows,
    test: &'a FeatureRows,
    ood: &'a FeatureRows,
    /// Whether the head labels each test row right (the same for every score: computed once).
    test_right: Vec<bool>,
}

impl Sets<'_> {
    /// Calibrates `scorer` on the validation rows and measures it; also returns the test and OOD scores.
    fn measure(
        &self,
        name: &str,
        keep: f32,
        scorer: &(dyn Fn(&FeatureRows) -> Vec<f32> + Sync),
    ) -> (ScoreResult, Vec<f32>, Vec<f32>) {
        let threshold = quantile_threshold(&scorer(self.valid), keep);
        let test_scores = scorer(self.test);
        let ood_scores = scorer(self.ood);
        let kept: Vec<usize> = (0..self.test.len())
            .filter(|&i| test_scores[i] <= threshold)
            .collect();
        let correct = kept.iter().filter(|&&i| self.test_right[i]).count();
        let result = ScoreResult {
            score: name.to_string(),
            threshold,
            test_kept: kept.len() as f32 / self.test.len().max(1) as f32,
            kept_accuracy: correct as f32 / kept.len().max(1) as f32,
            ood_accepted: ood_scores.iter().filter(|&&s| s <= threshold).count() as f32
                / ood_scores.len().max(1) as f32,
            auroc: auroc(&test_scores, &ood_scores),
        };
        (result, test_scores, ood_scores)
    }
}

/// The five paths with the lowest scores.
fn closest(paths: &[PathBuf], scores: &[f32]) -> Vec<(PathBuf, f32)> {
    let mut pairs: Vec<(PathBuf, f32)> =
        paths.iter().cloned().zip(scores.iter().copied()).collect();
    pairs.sort_by(|a, b| a.1.total_cmp(&b.1));
    pairs.truncate(5);
    pairs
}

/// The backbone over `paths`, as extraction ran it, and the paths that gave features (unreadable images are
/// left out).
fn extract_ood(
    run: &Run,
    paths: &[PathBuf],
    progress: &indicatif::ProgressBar,
) -> Result<(FeatureRows, Vec<PathBuf>), OodError> {
    use crate::features::extractor::{ExtractOptions, FeatureExtractor};
    let recorded = &run.config.features;
    let backbone = lookout_models::Backbone::from_file(
        &recorded.recipe.backbone.path,
        Some(recorded.recipe.preprocess.clone()),
    )?;
    let options = ExtractOptions {
        cut: recorded.recipe.backbone.identity.cut.clone(),
        pool: recorded.recipe.pooling,
        ..ExtractOptions::default()
    };
    let extractor = FeatureExtractor::new(&backbone, &options)?;
    progress.set_length(paths.len() as u64);
    let outcomes = extractor.extract_files(paths, progress)?;
    progress.finish_and_clear();
    let dim = extractor.feature_dim();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut kept = Vec::new();
    for (path, outcome) in paths.iter().zip(outcomes) {
        if let Ok(row) = outcome {
            features.extend(row);
            labels.push(0);
            kept.push(path.clone());
        }
    }
    Ok((FeatureRows::new(features, labels, dim)?, kept))
}

fn max_probability(run: &Run, rows: &FeatureRows) -> Vec<f32> {
    logits(run, rows)
        .chunks(run.head.outputs().max(1))
        .map(|l| {
            let scores = run.scores(l);
            1.0 - scores.iter().copied().fold(0.0, f32::max)
        })
        .collect()
}

fn energy(run: &Run, rows: &FeatureRows) -> Vec<f32> {
    logits(run, rows)
        .chunks(run.head.outputs().max(1))
        .map(|l| {
            // Sigmoid(z) is the softmax of [−z/2, z/2]: the symmetric pair, so neither class is favoured.
            let all: Vec<f32> = if l.len() == 1 {
                vec![-l[0] / 2.0, l[0] / 2.0]
            } else {
                l.to_vec()
            };
            let max = all.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            -(max + all.iter().map(|v| (v - max).exp()).sum::<f32>().ln())
        })
        .collect()
}

fn logits(run: &Run, rows: &FeatureRows) -> Vec<f32> {
    if rows.is_empty() {
        return Vec::new();
    }
    run.head.forward_parallel(&rows.features)
}

fn knn_scores(bank: &[f32], dim: usize, rows: &FeatureRows, shape: &[usize]) -> Vec<f32> {
    match normalized_rows(&rows.features, shape) {
        Ok((unit, _)) => unit
            .par_chunks(dim.max(1))
            .map(|x| knn_cosine_score(bank, dim, x))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn detector_scores(detector: &UnknownDetector, rows: &FeatureRows, shape: &[usize]) -> Vec<f32> {
    match normalized_rows(&rows.features, shape) {
        Ok((unit, _)) => detector.scores(&unit),
        Err(_) => Vec::new(),
    }
}

/// Probability that an OOD score exceeds an in-distribution one (ties count half): the Mann–Whitney form of
/// the area under the ROC curve.
pub fn auroc(in_distribution: &[f32], ood: &[f32]) -> f32 {
    if in_distribution.is_empty() || ood.is_empty() {
        return f32::NAN;
    }
    let mut sorted = in_distribution.to_vec();
    sorted.sort_by(f32::total_cmp);
    let mut wins = 0.0f64;
    for &s in ood {
        let below = sorted.partition_point(|&v| v < s);
        let not_above = sorted.partition_point(|&v| v <= s);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    (wins / (in_distribution.len() as f64 * ood.len() as f64)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_of_separated_equal_and_reversed_scores() {
        assert_eq!(auroc(&[0.1, 0.2], &[0.8, 0.9]), 1.0);
        assert_eq!(auroc(&[0.5, 0.5], &[0.5]), 0.5);
        assert_eq!(auroc(&[0.8, 0.9], &[0.1, 0.2]), 0.0);
        assert!((auroc(&[0.1, 0.5], &[0.3]) - 0.5).abs() < 1e-6);
    }
}

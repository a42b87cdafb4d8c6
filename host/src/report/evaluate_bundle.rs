//! `lookout evaluate --model` and `lookout predict --model`: an exported bundle run through the edge runtime,
//! on image files, exactly as the Pi runs it.

use std::path::{Path, PathBuf};

use lookout_runtime::{Model, RuntimeOptions};
use serde::Serialize;

use super::evaluate::{compute_metrics, Metrics};
use crate::bundle::measure::{classify_files, progress_bar};
use crate::bundle::ExportError;
use crate::head::run::Run;

/// Evaluates the bundle at `bundle_path` on the test split of the run in `run_dir` (its image files, decoded
/// and preprocessed by the bundle's own recipe). `json` hides the progress bar (machine-readable output).
///
/// Returns the same metrics as `lookout evaluate --run`.
pub fn evaluate_bundle(
    bundle_path: &Path,
    run_dir: &Path,
    json: bool,
) -> Result<Metrics, ExportError> {
    let mut model = Model::load(bundle_path, &RuntimeOptions::default())?;
    let run = Run::load(run_dir)?;
    check_labels(&model, &run)?;
    let test = crate::bundle::check::load_test_split(run_dir, &run.config)?;
    let bar = progress_bar(test.rows.len(), "evaluating the bundle", !json);
    let predictions = classify_files(&mut model, &test.paths, &bar)?;
    bar.finish_and_clear();
    let labels: Vec<usize> = test.rows.labels.iter().map(|&l| l as usize).collect();
    let predicted: Vec<usize> = predictions.iter().map(|p| p.label).collect();
    let mut metrics = compute_metrics(&run.config.classes, &labels, &predicted)
        .map_err(|e| ExportError::Mismatch(e.to_string()))?;
    metrics.unknown_rate = model.unknown_threshold().map(|_| {
        predictions.iter().filter(|p| p.unknown).count() as f64 / predictions.len().max(1) as f64
    });
    Ok(metrics)
}

/// Refuses a bundle whose labels are not the run's classes: it was exported from another run.
pub(crate) fn check_labels(model: &Model, run: &Run) -> Result<(), ExportError> {
    if model.labels() != run.config.classes.as_slice() {
        return Err(ExportError::Mismatch(format!(
            "the bundle's labels {:?} differ from the run's classes {:?}: evaluate a bundle with the run it was \
             exported from",
            model.labels(),
            run.config.classes
        )));
    }
    Ok(())
}

/// One image labelled by a bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundlePrediction {
    /// The image file.
    pub path: PathBuf,
    /// The chosen label, or `None` when the image could not be read.
    pub label: Option<String>,
    /// Probability of the chosen label.
    pub score: Option<f32>,
    /// One probability per label (empty on error).
    pub probabilities: Vec<f32>,
    /// Why the image could not be classified.
    pub error: Option<String>,
    /// The bundle's out-of-distribution score (bundles with rejection).
    pub ood_score: Option<f32>,
    /// True when the image is none of the labels.
    pub unknown: bool,
    /// The bundle's background (the camera's empty scene): nothing to act on.
    pub background: bool,
}

/// What [`predict_bundle`] returns: the bundle's labels and one prediction per image, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundlePredictions {
    /// The bundle's class names.
    pub labels: Vec<String>,
    /// One entry per image.
    pub predictions: Vec<BundlePrediction>,
}

/// Labels each image with the bundle at `bundle_path`. An unreadable image gives an entry with `error` set
/// rather than stopping the rest; a bundle that does not load is an error.
pub fn predict_bundle(
    bundle_path: &Path,
    images: &[PathBuf],
    region: lookout_shared::Region,
    progress: bool,
) -> Result<BundlePredictions, ExportError> {
    let mut model = Model::load(bundle_path, &RuntimeOptions::default())?;
    let bar = progress_bar(images.len(), "predicting", progress && images.len() > 1);
    let mut out = Vec::with_capacity(images.len());
    for path in images {
        let result = model
            .decode_file(path, (!region.is_full()).then_some(region).as_slice())
            .map_err(|e| e.to_string())
            .and_then(|image| {
                let image = if region.is_full() {
                    image
                } else {
                    region.crop(&image)
                };
                model.classify(&image).map_err(|e| e.to_string())
            });
        out.push(match result {
            Ok(p) => BundlePrediction {
                path: path.clone(),
                label: model.labels().get(p.label).cloned(),
                score: Some(p.score),
                probabilities: p.probabilities,
                error: None,
                ood_score: p.ood_score,
                unknown: p.unknown,
                background: p.background,
            },
            Err(error) => BundlePrediction {
                path: path.clone(),
                label: None,
                score: None,
                probabilities: vec![],
                error: Some(error),
                ood_score: None,
                unknown: false,
                background: false,
            },
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(BundlePredictions {
        labels: model.labels().to_vec(),
        predictions: out,
    })
}

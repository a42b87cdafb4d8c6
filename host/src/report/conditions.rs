//! `lookout evaluate --model BUNDLE --conditions` (and `fit --conditions`): the exported bundle, run through
//! the edge runtime as the Pi runs it, on the test split rendered under each camera condition
//! ([`crate::transform::Condition`]), at fixed seeded strengths: the same frames for every bundle measured.

use std::path::Path;

use indicatif::ProgressBar;
use lookout_runtime::{Model, RuntimeOptions};
use rayon::prelude::*;
use serde::Serialize;

use crate::bundle::ExportError;
use crate::head::run::Run;
use crate::transform::conditions::SMALLEST_WINDOW;
use crate::transform::Condition;

/// The seed of the conditions' per-photo draws: fixed, so every bundle sees the same frames.
pub const CONDITIONS_SEED: u64 = 0xC0DE_CA3E;

/// Accuracy under one condition.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionResult {
    /// Its name (`low_light`, …; `clean` for the photos as they are).
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Fraction of the test photos labelled right and not called unknown: what acts on the Pi.
    pub accuracy: f64,
    /// Fraction whose label is right, whether or not the rejection called them unknown: the head alone.
    pub label_accuracy: f64,
    /// Fraction called none of the classes (bundles with rejection).
    pub unknown_rate: Option<f64>,
}

/// The bundle under every condition.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionsReport {
    /// Test photos measured.
    pub images: usize,
    /// The photos as they are.
    pub clean: ConditionResult,
    /// One per condition, in [`Condition::ALL`] order.
    pub conditions: Vec<ConditionResult>,
    /// Mean accuracy over the conditions (clean excluded).
    pub mean_accuracy: f64,
}

/// Measures the bundle at `bundle_path` on the test split of the run in `run_dir` under every condition.
/// Photos that cannot be read count as wrong. Uses every core (one runtime per worker).
pub fn evaluate_conditions(
    bundle_path: &Path,
    run_dir: &Path,
    progress: &ProgressBar,
) -> Result<ConditionsReport, ExportError> {
    let run = Run::load(run_dir)?;
    let probe = Model::load(bundle_path, &RuntimeOptions::default())?;
    super::evaluate_bundle::check_labels(&probe, &run)?;
    let has_rejection = probe.unknown_threshold().is_some();
    drop(probe);
    let test = crate::bundle::check::load_test_split(run_dir, &run.config)?;
    let passes = 1 + Condition::ALL.len();
    progress.set_length((test.paths.len() * passes) as u64);
    // Per photo: [clean, each condition] → (label right, unknown).
    let outcomes: Vec<Vec<(bool, bool)>> = test
        .paths
        .par_iter()
        .zip(test.rows.labels.par_iter())
        .enumerate()
        .map_init(
            || Model::load(bundle_path, &RuntimeOptions::default()),
            |model, (index, (path, &label))| -> Result<Vec<(bool, bool)>, ExportError> {
                let model = model
                    .as_mut()
                    .map_err(|e| ExportError::Mismatch(e.to_string()))?;
                // Clean as every path into a model decodes it (the gate's, `evaluate`'s); the conditions drawn
                // from the photo decoded for their smallest window (the same image unless it is a large JPEG).
                let decoded = model.decode_file(path, &[]).and_then(|clean| {
                    let spec = model.preprocess_spec();
                    lookout_shared::image_io::decode_file_for(path, spec, &[SMALLEST_WINDOW])
                        .map(|for_conditions| (clean, for_conditions))
                });
                let Ok((image, for_conditions)) = decoded else {
                    progress.inc(passes as u64);
                    return Ok(vec![(false, false); passes]);
                };
                let mut out = Vec::with_capacity(passes);
                let mut judge = |image: &image::RgbImage| -> Result<(bool, bool), ExportError> {
                    let p = model.classify(image)?;
                    progress.inc(1);
                    Ok((p.label == label as usize, p.unknown))
                };
                out.push(judge(&image)?);
                for condition in Condition::ALL {
                    let rendered = condition
                        .apply(&for_conditions, index, CONDITIONS_SEED)
                        .map_err(|e| ExportError::Mismatch(format!("{}: {e}", path.display())))?;
                    out.push(judge(&rendered)?);
                }
                Ok(out)
            },
        )
        .collect::<Result<_, _>>()?;
    let n = outcomes.len().max(1) as f64;
    let result = |k: usize, name: &'static str, description: &'static str| ConditionResult {
        name,
        description,
        accuracy: outcomes.iter().filter(|o| o[k].0 && !o[k].1).count() as f64 / n,
        label_accuracy: outcomes.iter().filter(|o| o[k].0).count() as f64 / n,
        unknown_rate: has_rejection.then(|| outcomes.iter().filter(|o| o[k].1).count() as f64 / n),
    };
    let clean = result(0, "clean", "the test photos as they are");
    let conditions: Vec<ConditionResult> = Condition::ALL
        .iter()
        .enumerate()
        .map(|(k, c)| result(k + 1, c.name(), c.description()))
        .collect();
    let mean_accuracy =
        conditions.iter().map(|c| c.accuracy).sum::<f64>() / conditions.len().max(1) as f64;
    Ok(ConditionsReport {
        images: outcomes.len(),
        clean,
        conditions,
        mean_accuracy,
    })
}

/// Where `evaluate --conditions` and `fit --conditions` draw the chart, in the run directory.
pub const CONDITIONS_PLOT_FILE: &str = "conditions.png";

impl ConditionsReport {
    /// The table `evaluate --conditions` prints.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "\nCamera conditions ({} test photos, through the bundle as the Pi runs it):\n",
            self.images
        );
        for c in std::iter::once(&self.clean).chain(&self.conditions) {
            out.push_str(&format!(
                "  {:<12} {:>6.2}%{}   {}\n",
                c.name,
                c.accuracy * 100.0,
                c.unknown_rate
                    .map(|u| format!(
                        "  ({:.1}% unknown; label right {:.2}%)",
                        u * 100.0,
                        c.label_accuracy * 100.0
                    ))
                    .unwrap_or_default(),
                c.description
            ));
        }
        out.push_str(&format!(
            "  {:<12} {:>6.2}%   over the {} conditions ({:+.2} points from clean)\n",
            "mean",
            self.mean_accuracy * 100.0,
            self.conditions.len(),
            (self.mean_accuracy - self.clean.accuracy) * 100.0
        ));
        out
    }
}

//! Measuring a bundle the way the Pi runs it: `lookout_runtime::Model` on image files decoded from disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lookout_runtime::{Model, Prediction, RuntimeOptions};
use lookout_shared::Bundle;

use crate::features::SplitFeatures;
use crate::head::run::Run;

use super::{ExportError, ExportOptions, ExportPrecision};

/// What [`measure_bundle`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Accuracy of the bundle (0..1).
    pub accuracy: f32,
    /// Accuracy of the float model on the same images, from the cached features (0..1).
    pub float_accuracy: f32,
    /// Fraction of images where both give the same label.
    pub agreement: f32,
    /// Largest difference of any class probability.
    pub max_probability_diff: f32,
    /// Number of images.
    pub images: usize,
    /// Load + optimise time of the bundle's model, ms.
    pub load_ms: f32,
    /// Mean inference time per image, ms.
    pub mean_inference_ms: f32,
    /// Fraction of the (in-distribution) test images the bundle calls unknown; `None` without rejection.
    pub unknown_rate: Option<f32>,
    /// Set when the whole test split would have taken too long (a precision this CPU emulates): the gate
    /// measured a sample instead.
    pub sample: Option<GateSample>,
}

/// A gate measured on a sample of the test split, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateSample {
    /// Test images in the split.
    pub of: usize,
    /// What the whole split would have taken on this machine, all cores, seconds (from the first image).
    pub whole_split_estimate_s: f32,
    /// The 95 % confidence interval of the bundle's accuracy on the sample (Wilson), 0..1.
    pub accuracy_low: f32,
    /// Its upper end.
    pub accuracy_high: f32,
}

/// How long an accuracy gate may take before it measures a sample instead of the whole test split (unless
/// `--test-images` says how many): f16 is emulated on x86 (a tutorial-head gate on 200 photos was reported still
/// running after 17 minutes on one core).
pub const GATE_BUDGET: Duration = Duration::from_secs(120);
/// The smallest sample a bounded gate measures: below it the interval says little.
pub const MIN_GATE_SAMPLE: usize = 20;

/// The 95 % Wilson score interval of `correct` out of `n`.
pub fn wilson_interval(correct: usize, n: usize) -> (f32, f32) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z) = (n as f64, correct as f64 / n as f64, 1.959_964);
    let center = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (
        (center - half).max(0.0) as f32,
        (center + half).min(1.0) as f32,
    )
}

/// A progress bar over `len` images on stderr, or a hidden one.
pub fn progress_bar(len: usize, message: &str, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images, {eta} left")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_string());
    bar
}

/// Decodes each image file and classifies it with `model`, in order (the caller finishes `bar`).
pub fn classify_files(
    model: &mut Model,
    paths: &[PathBuf],
    bar: &ProgressBar,
) -> Result<Vec<Prediction>, ExportError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        out.push(classify_file(model, path)?);
        bar.inc(1);
    }
    Ok(out)
}

fn classify_file(model: &mut Model, path: &Path) -> Result<Prediction, ExportError> {
    let image = model
        .decode_file(path, &[])
        .map_err(|e| ExportError::Image {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    Ok(model.classify(&image)?)
}

/// Loads `bundle` in the edge runtime and compares it with the float head on the test images. The first image
/// is timed alone: when the whole split would take over `options.gate_budget` ([`GATE_BUDGET`]) on all cores (and `--test-images` did not
/// bound it), a sample that fits the budget is measured instead and the report says so, with the interval. Long
/// gates run on every core, a model each.
pub fn measure_bundle(
    bundle: Bundle,
    run: &Run,
    test: &SplitFeatures,
    precision: ExportPrecision,
    options: &ExportOptions,
) -> Result<Measured, ExportError> {
    let start = Instant::now();
    let mut model = Model::from_bundle(bundle.clone(), &RuntimeOptions::default())?;
    let load_ms = super::elapsed_ms(start);
    let Some(first_path) = test.paths.first() else {
        return Err(ExportError::Precision(
            "the run's test split is empty: nothing to measure the bundle on".into(),
        ));
    };
    let timed = Instant::now();
    let first = classify_file(&mut model, first_path)?;
    // The first image carries the first run's warm-up: an estimate on the safe side.
    let per_image = timed.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads().max(1);
    let whole = per_image * test.paths.len() as f64 / threads.min(test.paths.len()) as f64;
    let budget = options.gate_budget.as_secs_f64();
    let bounded = options.max_test_images.is_none() && whole > budget;
    let split_len = test.paths.len();
    let test = if bounded {
        let fit = (budget / per_image * threads as f64) as usize;
        // `subsample` keeps the first image, which is measured already.
        super::check::subsample(test.clone(), Some(fit.max(MIN_GATE_SAMPLE)))
    } else {
        test.clone()
    };
    let message = if bounded {
        format!(
            "measuring the {precision} export on {} of {} test images (all of them: ~{:.0} min on this CPU)",
            test.paths.len(),
            split_len,
            whole / 60.0
        )
    } else {
        format!("measuring the {precision} export")
    };
    let bar = progress_bar(test.rows.len(), &message, options.progress);
    bar.inc(1);
    let rest = &test.paths[1..];
    // Worth a model per core only when the gate is long (loading one costs about as much as a few images).
    let mut predictions = vec![first];
    if threads > 1 && per_image * rest.len() as f64 > 10.0 {
        use rayon::prelude::*;
        let chunk = rest.len().div_ceil(threads).max(1);
        // The model loaded above takes the first share; the other cores load one each.
        let (mine, others) = rest.split_at(chunk.min(rest.len()));
        let (first_share, other_shares) = rayon::join(
            || classify_files(&mut model, mine, &bar),
            || {
                others
                    .par_chunks(chunk)
                    .map(|paths| {
                        let mut model =
                            Model::from_bundle(bundle.clone(), &RuntimeOptions::default())?;
                        classify_files(&mut model, paths, &bar)
                    })
                    .collect::<Result<Vec<Vec<Prediction>>, ExportError>>()
            },
        );
        predictions.extend(first_share?);
        predictions.extend(other_shares?.into_iter().flatten());
    } else {
        predictions.extend(classify_files(&mut model, rest, &bar)?);
    }
    bar.finish_and_clear();

    let mut correct = 0usize;
    let mut float_correct = 0usize;
    let mut agree = 0usize;
    let mut max_diff = 0f32;
    let mut inference = Duration::ZERO;
    let mut unknown = 0usize;
    for (i, prediction) in predictions.iter().enumerate() {
        let logits = run.head.forward(test.rows.row(i));
        let float_label = run.predict(&logits);
        let float_scores = run.scores(&logits);
        let truth = test.rows.labels[i] as usize;
        correct += usize::from(prediction.label == truth);
        float_correct += usize::from(float_label == truth);
        agree += usize::from(prediction.label == float_label);
        max_diff = max_diff.max(super::check::max_abs_diff(
            &prediction.probabilities,
            &float_scores,
        ));
        inference += prediction.inference;
        unknown += usize::from(prediction.unknown);
    }
    let n = predictions.len().max(1) as f32;
    let sample = bounded.then(|| {
        let (low, high) = wilson_interval(correct, predictions.len());
        GateSample {
            of: split_len,
            whole_split_estimate_s: whole as f32,
            accuracy_low: low,
            accuracy_high: high,
        }
    });
    Ok(Measured {
        accuracy: correct as f32 / n,
        float_accuracy: float_correct as f32 / n,
        agreement: agree as f32 / n,
        max_probability_diff: max_diff,
        images: predictions.len(),
        load_ms,
        mean_inference_ms: inference.as_secs_f32() * 1000.0 / n,
        unknown_rate: model.unknown_threshold().map(|_| unknown as f32 / n),
        sample,
    })
}

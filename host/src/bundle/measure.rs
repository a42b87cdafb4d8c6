//! Measuring a bundle the way the Pi runs it: `lookout_runtime::Model` on image files decoded from disk.

use std::path::PathBuf;
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

/// Decodes each image file and classifies it with `model`, in order.
pub fn classify_files(
    model: &mut Model,
    paths: &[PathBuf],
    bar: &ProgressBar,
) -> Result<Vec<Prediction>, ExportError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let image =
            lookout_shared::image_io::decode_file(path).map_err(|e| ExportError::Image {
                path: path.clone(),
                source: e.into(),
            })?;
        out.push(model.classify(&image)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Loads `bundle` in the edge runtime and compares it with the float head on the test images.
pub fn measure_bundle(
    bundle: Bundle,
    run: &Run,
    test: &SplitFeatures,
    precision: ExportPrecision,
    options: &ExportOptions,
) -> Result<Measured, ExportError> {
    let start = Instant::now();
    let mut model = Model::from_bundle(bundle, &RuntimeOptions::default())?;
    let load_ms = super::elapsed_ms(start);
    let bar = progress_bar(
        test.rows.len(),
        &format!("measuring the {precision} export"),
        options.progress,
    );
    let predictions = classify_files(&mut model, &test.paths, &bar)?;

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
    Ok(Measured {
        accuracy: correct as f32 / n,
        float_accuracy: float_correct as f32 / n,
        agreement: agree as f32 / n,
        max_probability_diff: max_diff,
        images: predictions.len(),
        load_ms,
        mean_inference_ms: inference.as_secs_f32() * 1000.0 / n,
        unknown_rate: model.unknown_threshold().map(|_| unknown as f32 / n),
    })
}

//! Classification metrics: accuracy, per-class precision / recall / F1 and the confusion matrix.
//!
//! [`compute_metrics`] is a pure function of (labels, predictions), shared by `lookout evaluate --run`
//! (a trained head on cached features) and the export's `evaluate --model` (a bundle on images), so both
//! print the same JSON keys: `accuracy`, `per_class`, `confusion`.

use serde::{Deserialize, Serialize};

/// Errors of metric computation.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// Labels and predictions differ in length.
    #[error("{labels} labels but {predictions} predictions")]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of predictions.
        predictions: usize,
    },
    /// A label or prediction is not a class index.
    #[error("class index {index} is out of range for {classes} classes")]
    ClassOutOfRange {
        /// The index.
        index: usize,
        /// Number of classes.
        classes: usize,
    },
    /// Nothing to evaluate.
    #[error("no examples to evaluate")]
    Empty,
}

/// Precision, recall and F1 of one class (one-vs-rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub class: String,
    /// Of the examples predicted as this class, the fraction that are (0 when none was predicted).
    pub precision: f64,
    /// Of the examples of this class, the fraction predicted as it (0 when there are none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of examples of this class.
    pub support: usize,
}

/// All metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Fraction of examples predicted correctly, 0..=1.
    pub accuracy: f64,
    /// Number of examples.
    pub examples: usize,
    /// Class names, the order of `per_class` and of the confusion matrix's rows and columns.
    pub classes: Vec<String>,
    /// One entry per class, in `classes` order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Fraction of the examples (all of them photos of the classes) the rejection calls none of the classes;
    /// `None` without rejection. Accuracy counts every example with its label, unknown or not.
    #[serde(default)]
    pub unknown_rate: Option<f64>,
}

/// Metrics of `predictions` against `labels`, both class indices into `classes`.
pub fn compute_metrics(
    classes: &[String],
    labels: &[usize],
    predictions: &[usize],
) -> Result<Metrics, EvaluateError> {
    if labels.len() != predictions.len() {
        return Err(EvaluateError::LengthMismatch {
            labels: labels.len(),
            predictions: predictions.len(),
        });
    }
    if labels.is_empty() {
        return Err(EvaluateError::Empty);
    }
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in labels.iter().zip(predictions) {
        for index in [t, p] {
            if index >= k {
                return Err(EvaluateError::ClassOutOfRange { index, classes: k });
            }
        }
        confusion[t][p] += 1;
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                class: classes[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    Ok(Metrics {
        accuracy: correct as f64 / labels.len() as f64,
        examples: labels.len(),
        classes: classes.to_vec(),
        per_class,
        confusion,
        unknown_rate: None,
    })
}

/// What can go wrong measuring a run's float head on its test split.
#[derive(Debug, thiserror::Error)]
pub enum SplitMetricsError {
    /// The test split cannot be read.
    #[error("reading the test features: {0}")]
    Features(#[from] crate::features::FeaturesError),
    /// The metrics cannot be computed.
    #[error(transparent)]
    Evaluate(#[from] EvaluateError),
    /// The run's rejection cannot be read.
    #[error("the run's rejection of unknown images: {0}")]
    UnknownFile(#[from] crate::head::unknown::UnknownFileError),
    /// The features cannot be pooled for the rejection.
    #[error(transparent)]
    Unknown(#[from] crate::head::unknown::UnknownError),
}

/// The float head of `run` (saved in `run_dir`) on the test split of `features` (the cached rows, no image is
/// decoded), with the rejection's rate when the run has one; `None` when the split is empty. Looked at only
/// once the weights are fixed: training never sees it.
pub fn float_test_metrics(
    run: &crate::head::run::Run,
    run_dir: &std::path::Path,
    features: &crate::features::FeatureSet,
) -> Result<Option<Metrics>, SplitMetricsError> {
    let test = features.load_split(crate::features::Split::Test)?;
    if test.rows.is_empty() {
        return Ok(None);
    }
    let k = run.head.outputs();
    let predictions: Vec<usize> = run
        .head
        .forward_parallel(&test.rows.features)
        .chunks(k)
        .map(|l| run.predict(l))
        .collect();
    let labels: Vec<usize> = test.rows.labels.iter().map(|&l| l as usize).collect();
    let mut metrics = compute_metrics(&run.config.classes, &labels, &predictions)?;
    if let Some(detector) = run.unknown_detector(run_dir)? {
        let (unit, _) = crate::head::unknown::normalized_rows(
            &test.rows.features,
            &run.config.features.recipe.feature_shape,
        )?;
        let scores = detector.scores(&unit);
        let unknown = scores.iter().filter(|&&s| s > detector.threshold).count();
        metrics.unknown_rate = Some(unknown as f64 / scores.len().max(1) as f64);
    }
    Ok(Some(metrics))
}

impl Metrics {
    /// The per-class table and the confusion matrix as aligned text.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let name_width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(10);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_width$}  precision  recall     f1  support",
            "class"
        );
        for m in &self.per_class {
            let _ = writeln!(
                out,
                "{:<name_width$}  {:>9.4}  {:>6.4}  {:>5.4}  {:>7}",
                m.class, m.precision, m.recall, m.f1, m.support
            );
        }
        let _ = writeln!(
            out,
            "\nconfusion matrix (rows: true class, columns: predicted)"
        );
        let cell = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(
                self.confusion
                    .iter()
                    .flatten()
                    .map(|n| n.to_string().len())
                    .max()
                    .unwrap_or(1),
            );
        let _ = write!(out, "{:<name_width$}", "");
        for c in &self.classes {
            let _ = write!(out, "  {c:>cell$}");
        }
        let _ = writeln!(out);
        for (name, row) in self.classes.iter().zip(&self.confusion) {
            let _ = write!(out, "{name:<name_width$}");
            for n in row {
                let _ = write!(out, "  {n:>cell$}");
            }
            let _ = writeln!(out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn binary_metrics_by_hand() {
        // true:  0 0 0 0 1 1 1 1 1 1
        // pred:  0 0 0 1 1 1 1 1 0 0
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let preds = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0];
        let m = compute_metrics(&names(2), &labels, &preds).unwrap();
        assert_eq!(m.confusion, vec![vec![3, 1], vec![2, 4]]);
        assert!((m.accuracy - 0.7).abs() < 1e-12);
        // class 0: precision 3/5, recall 3/4; class 1: precision 4/5, recall 4/6
        assert!((m.per_class[0].precision - 0.6).abs() < 1e-12);
        assert!((m.per_class[0].recall - 0.75).abs() < 1e-12);
        assert!((m.per_class[0].f1 - 2.0 * 0.6 * 0.75 / 1.35).abs() < 1e-12);
        assert!((m.per_class[1].precision - 0.8).abs() < 1e-12);
        assert!((m.per_class[1].recall - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.per_class[1].support, 6);
        let table = m.to_table();
        assert!(table.contains("confusion matrix"), "{table}");
    }

    #[test]
    fn a_class_never_predicted_has_zero_precision_not_nan() {
        let m = compute_metrics(&names(3), &[0, 1, 2], &[0, 0, 0]).unwrap();
        assert_eq!(m.per_class[1].precision, 0.0);
        assert_eq!(m.per_class[1].f1, 0.0);
        assert!((m.accuracy - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            compute_metrics(&names(2), &[0], &[0, 1]),
            Err(EvaluateError::LengthMismatch { .. })
        ));
        assert!(matches!(
            compute_metrics(&names(2), &[0, 2], &[0, 1]),
            Err(EvaluateError::ClassOutOfRange { .. })
        ));
        assert!(matches!(
            compute_metrics(&names(2), &[], &[]),
            Err(EvaluateError::Empty)
        ));
    }
}

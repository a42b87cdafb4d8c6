//! What an export reports: the bundle written, what it measured, and every try on the way.

use std::path::PathBuf;

use serde::Serialize;

use super::quantize::{LayerState, Sensitivity, WeightLayer};
use super::{measure, ExportPrecision};

/// What an export produced and measured.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The bundle written.
    pub path: PathBuf,
    /// Its precision.
    pub precision: ExportPrecision,
    /// Size of the bundle file in bytes.
    pub file_size: u64,
    /// Size of the model inside it (NNEF tar) in bytes.
    pub model_size: u64,
    /// Test accuracy of the exported model through the edge runtime (0..1).
    pub accuracy: f32,
    /// Test accuracy of the float model (0..1).
    pub float_accuracy: f32,
    /// Fraction of test images with the same label as the float model.
    pub agreement: f32,
    /// Largest difference of any class probability against the float model.
    pub max_probability_diff: f32,
    /// Number of test images measured.
    pub test_images: usize,
    /// Set when the gate measured a sample of the test split (the whole would have taken too long here).
    pub gate_sample: Option<measure::GateSample>,
    /// Time the edge runtime took to load and optimise the model, ms.
    pub load_ms: f32,
    /// Mean inference time per image through the edge runtime on this machine, ms.
    pub mean_inference_ms: f32,
    /// Largest probability difference between the combined f32 graph and the host float pipeline.
    pub compose_check_diff: f32,
    /// True when the accuracy drop was over the limit and `force` wrote it anyway.
    pub forced: bool,
    /// One-line description of the head.
    pub head: String,
    /// Fraction of the test photos (all of them of the classes) the bundle calls unknown; `None` without
    /// rejection.
    pub unknown_rate: Option<f32>,
    /// The ONNX copy written (`--onnx`) and its size in bytes.
    pub onnx: Option<(PathBuf, u64)>,
    /// What the block-quantized precisions did with each weight matrix (`None` for the others).
    pub weights: Option<WeightsReport>,
    /// Every precision measured, in order (one for a named precision that passed at once).
    pub attempts: Vec<Attempt>,
    /// What `--precision auto` did not try, and why.
    pub skipped: Vec<Skipped>,
}

/// A precision `--precision auto` left out before measuring it.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The precision.
    pub precision: ExportPrecision,
    /// Why, in a sentence.
    pub reason: String,
}

/// One precision measured on the way to the bundle written.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The precision.
    pub precision: ExportPrecision,
    /// The weight layers left float in this try (block-quantized precisions).
    pub kept_float: Vec<String>,
    /// Size of the model (NNEF tar), bytes.
    pub model_size: u64,
    /// Test accuracy through the edge runtime (0..1).
    pub accuracy: f32,
    /// Fraction of test photos labelled as the float model labels them.
    pub agreement: f32,
    /// Accuracy lost against the float model, points.
    pub drop_points: f32,
    /// What the try cost: building, calibrating and measuring it, seconds.
    #[serde(default)]
    pub seconds: f32,
}

impl Attempt {
    /// "1 layer float", "4 layers float"; `None` when every layer was quantized.
    pub fn kept_float_phrase(&self) -> Option<String> {
        match self.kept_float.len() {
            0 => None,
            1 => Some("1 layer float".to_string()),
            n => Some(format!("{n} layers float")),
        }
    }
}

pub(super) fn attempts_line(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| {
            let kept = a
                .kept_float_phrase()
                .map_or(String::new(), |phrase| format!(" with {phrase}"));
            format!(
                "{}{kept}: {:.2}% ({:.1} MB)",
                a.precision,
                a.accuracy * 100.0,
                a.model_size as f64 / 1e6
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a block-quantized export did with the graph's weight matrices.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsReport {
    /// Weight matrices stored as Q4_0.
    pub quantized_layers: usize,
    /// Their weights.
    pub quantized_weights: usize,
    /// Weight matrices left float because their inputs do not fill 32-weight blocks.
    pub partial_block_layers: usize,
    /// Their weights.
    pub partial_block_weights: usize,
    /// Weight matrices kept float for accuracy, with their sensitivity.
    pub kept_float: Vec<Sensitivity>,
    /// The most sensitive layers, worst first (when the sensitivity check ran), at most five.
    pub most_sensitive: Vec<Sensitivity>,
    /// Every weight matrix and what became of it, largest first.
    pub layers: Vec<WeightLayer>,
}

impl WeightsReport {
    pub(super) fn new(
        layers: &[WeightLayer],
        sensitivity: Option<&[Sensitivity]>,
    ) -> WeightsReport {
        let count = |state: LayerState| {
            let of: Vec<_> = layers.iter().filter(|l| l.state == state).collect();
            (of.len(), of.iter().map(|l| l.weights()).sum::<usize>())
        };
        let (quantized_layers, quantized_weights) = count(LayerState::Q4);
        let (partial_block_layers, partial_block_weights) = count(LayerState::FloatPartialBlocks);
        let sensitivity = sensitivity.unwrap_or_default();
        let kept_float = layers
            .iter()
            .filter(|l| l.state == LayerState::FloatKept)
            .map(|l| Sensitivity {
                name: l.name.clone(),
                relative_error: sensitivity
                    .iter()
                    .find(|s| s.name == l.name)
                    .map_or(f32::NAN, |s| s.relative_error),
            })
            .collect();
        WeightsReport {
            quantized_layers,
            quantized_weights,
            partial_block_layers,
            partial_block_weights,
            kept_float,
            most_sensitive: sensitivity.iter().take(5).cloned().collect(),
            layers: layers.to_vec(),
        }
    }
}

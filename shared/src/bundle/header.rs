//! The bundle's header: what the model is (labels, preprocessing, backbone, head, precision, rejection, the
//! empty scene) and what it measured at export.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::preprocess::PreprocessSpec;

/// Numeric precision of the model inside a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Precision {
    /// 32-bit float weights and activations.
    F32,
    /// 16-bit float weights and activations (native on ARMv8.2 FP16, e.g. the Pi 5's Cortex-A76).
    F16,
    /// 8-bit integer weights and activations, statically calibrated.
    Int8,
    /// Float activations; the head's large matrix weights block-quantized to 4 bits.
    F32WeightsQ4,
    /// f32 activations; every matrix weight that fills whole 32-weight blocks (pointwise convolutions, the
    /// head, the rejection's bank) block-quantized to 4 bits (Q4_0), the rest f32.
    Q4,
    /// f16 activations and float weights (as `F16`), with the matrix weights block-quantized to 4 bits as
    /// in `Q4` (fast on ARMv8.2 FP16, e.g. a Pi 5).
    F16Q4,
}

/// How the model's output becomes class probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// Names as run.json writes them ("sigmoid"); the bundle's postcard encoding uses the variant index, so the
// names are not part of the bundle format.
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// One output: the probability of label index 1 (label index 0 otherwise).
    Sigmoid,
    /// One probability per label, summing to 1.
    Softmax,
}

/// Serialization of the model bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModelFormat {
    /// tract NNEF, tar archive (what `tract_nnef::Nnef::write_to_tar` writes).
    NnefTar,
    /// The same tar, gzip-compressed (tract's `.nnef.tgz`; its reader inflates it as it reads). What exports
    /// write since 4-bit bundles: deflate took 5.0 % off a Lite0 q4 model, 12.8 % off a MobileNetV3-Small q4
    /// one and 8-15 % off float ones (measured on the tutorial-head runs, docs/quantization.md). Appended to the enum: an older reader refuses
    /// such a bundle ("written by an incompatible build") instead of misreading it.
    NnefTarGz,
}

/// Which backbone the model was built on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BackboneInfo {
    /// Catalogue name or file stem, e.g. `mobilenet_v3_large`.
    pub name: String,
    /// SHA-256 (hex) of the backbone file the features were extracted with.
    pub sha256: String,
    /// Node the features were taken from, when not the model's output.
    pub cut: Option<String>,
}

/// The classifier head on top of the backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HeadInfo {
    /// Head kind: `tutorial`, `linear`, `mlp`.
    pub kind: String,
    /// One-line description, e.g. `flatten → Linear(47040,256) → ReLU → Dropout(0.5) → Linear(256,1)`.
    pub description: String,
    /// Number of trainable parameters.
    pub parameters: u64,
}

/// What was measured when the bundle was exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ExportMetrics {
    /// Test-split accuracy of this exported model (0..1), run through the edge runtime.
    pub accuracy: f32,
    /// Test-split accuracy of the float model it was exported from (0..1).
    pub float_accuracy: f32,
    /// Fraction of test images where this model and the float model give the same label (0..1).
    pub agreement: f32,
    /// Largest absolute difference of the top probability against the float model.
    pub max_probability_diff: f32,
    /// Number of test images measured.
    pub test_images: u32,
    /// Time to load and optimise the model, in milliseconds, on the exporting machine.
    pub load_ms: f32,
    /// Size of the whole bundle file in bytes (written after the fact; 0 while unknown).
    pub file_size: u64,
}

/// How the model tells what is none of its labels: the graph's second output is an out-of-distribution score
/// for the image, and a score above `threshold` means "unknown".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnknownInfo {
    /// What the score is, e.g. `knn-cosine`: 1 − the cosine similarity of the image's pooled backbone
    /// features to the nearest of `bank_size` training images.
    pub method: String,
    /// Scores above this are unknown.
    pub threshold: f32,
    /// The fraction of held-out in-distribution images the threshold was calibrated to keep (e.g. 0.95).
    pub keep: f32,
    /// Number of training images the score compares against.
    pub bank_size: u32,
}

/// Everything about the model except its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleHeader {
    /// Class names; the index is the label index.
    pub labels: Vec<String>,
    /// How images must be prepared for the model.
    pub preprocess: PreprocessSpec,
    /// The backbone the model was built on.
    pub backbone: BackboneInfo,
    /// The classifier head.
    pub head: HeadInfo,
    /// Numeric precision of the model.
    pub precision: Precision,
    /// Model input shape, e.g. `[1, 3, 224, 224]`.
    pub input_shape: Vec<u32>,
    /// How outputs become probabilities.
    pub output: OutputKind,
    /// Decision threshold on the probability of label 1 for sigmoid models (0.5 unless tuned).
    pub threshold: f32,
    /// What was measured at export, if anything.
    pub metrics: Option<ExportMetrics>,
    /// Version of lookout that wrote the bundle.
    pub lookout_version: String,
    /// Serialization of the model bytes.
    pub model_format: ModelFormat,
    /// The rejection of unknown images, when the model has one (since format version 2, see the module docs).
    pub unknown: Option<UnknownInfo>,
    /// The index of the label that is the camera's empty scene (`lookout fit --background`), when there is
    /// one: a frame of that label is answered as "nothing", which is neither one of the other labels nor
    /// unknown, and never acts (since format version 3; always last, see the module docs).
    pub background: Option<u32>,
}

impl BundleHeader {
    /// Number of classes the model distinguishes.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The name of label `index`, if the model has that many labels.
    pub fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    /// The index of the background label (the empty scene), if the model has one.
    pub fn background_label(&self) -> Option<usize> {
        self.background.map(|index| index as usize)
    }

    /// True when `index` is the background label: a frame of it shows nothing to act on.
    pub fn is_background(&self, index: usize) -> bool {
        self.background_label() == Some(index)
    }
}

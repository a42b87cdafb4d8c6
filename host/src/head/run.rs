//! The run directory: what `lookout train` leaves behind and `evaluate`, `predict` and `export` read.
//!
//! ```text
//! RUN_DIR/
//!   run.json          RunConfig: head shape, classes, output kind, threshold, the features' backbone + preprocess
//!   head.safetensors  the head's weights, PyTorch names: fc1.weight [out, in], fc1.bias [out], fc2.weight, …
//!   history.json      per-epoch losses and accuracies
//!   curves.png        loss and accuracy curves
//!   confusion.png     written by `lookout evaluate`
//! ```
//!
//! The head itself (its maths) is [`super::net::Head`]; this module is the files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lookout_shared::atomic::{write_atomic, WriteError};
use lookout_shared::bundle::OutputKind;
use serde::{Deserialize, Serialize};

use super::net::{Dense, Head, HeadError, HeadKind};
use super::unknown::{UnknownDetector, UnknownFileError, UnknownRecord};
use crate::features::{FeatureRecipe, Pooling};

/// File name of the run's configuration inside a run directory.
pub const RUN_FILE: &str = "run.json";
/// File name of the head's weights inside a run directory.
pub const HEAD_FILE: &str = "head.safetensors";
/// File name of the training history inside a run directory.
pub const HISTORY_FILE: &str = "history.json";
/// File name of the training curves inside a run directory.
pub const CURVES_FILE: &str = "curves.png";
/// File name of the out-of-distribution score histogram inside a run directory (`evaluate --ood`).
pub const OOD_PLOT_FILE: &str = "ood.png";
/// File name of the confusion matrix picture inside a run directory.
pub const CONFUSION_FILE: &str = "confusion.png";
/// Value of `format` in run.json.
pub const RUN_FORMAT: &str = "lookout-run";
/// Version of the run.json layout this build writes. 2: `features.recipe` ([`FeatureRecipe`]) holds the backbone,
/// preprocessing, feature shape and pooling; version 1, with them in `features` itself, still reads.
pub const RUN_FORMAT_VERSION: u32 = 2;

/// Errors reading or writing a run directory.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory has no run.json.
    #[error("{0} is not a training run (no {RUN_FILE}); train one with `lookout train --features DIR --out {0}`")]
    NotARun(PathBuf),
    /// run.json is not valid.
    #[error("{path}: invalid run description: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// run.json was written by an incompatible version.
    #[error("{path}: run format {found:?} version {version} is not supported (this build reads {RUN_FORMAT:?} versions 1 to {RUN_FORMAT_VERSION})")]
    Version {
        /// The file.
        path: PathBuf,
        /// The `format` found.
        found: String,
        /// The `version` found.
        version: u32,
    },
    /// head.safetensors is unreadable or does not match run.json.
    #[error("{}: {source}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<WeightsError>,
    },
    /// The head description is inconsistent.
    #[error("invalid head: {0}")]
    Head(#[from] HeadError),
    /// A file of the run could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What is wrong with a head.safetensors file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// Not a safetensors file (or a damaged one).
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A tensor run.json names is not there.
    #[error("missing tensor {0}")]
    Missing(String),
    /// A tensor has another type or shape than run.json says.
    #[error("{name} is {dtype} {shape:?}, run.json expects F32 {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// Its element type.
        dtype: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The shape run.json gives.
        expected: Vec<usize>,
    },
}

/// The head's hyper-parameters as recorded in run.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Architecture.
    pub kind: HeadKind,
    /// Width of the hidden layers (unused by `linear`).
    pub hidden: usize,
    /// Dropout probability during training (unused by `linear`).
    pub dropout: f32,
    /// Pooling of the cached features before the first layer.
    pub pool: Pooling,
    /// Shape of one cached feature vector as the head receives it, e.g. `[1280, 7, 7]` or `[960]`.
    pub input_shape: Vec<usize>,
    /// Number of inputs of the first layer (after pooling).
    pub input_dim: usize,
    /// Number of logits.
    pub outputs: usize,
    /// Names of the linear layers in order (`fc1`, `fc2`, …); ReLU sits between consecutive ones.
    pub layers: Vec<String>,
}

/// Where the head's inputs came from: everything needed to compute them again from an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesRecord {
    /// The features cache the head was trained on.
    pub dir: PathBuf,
    /// How an image became the head's input: the features cache's own recipe (with pooling at extraction,
    /// the backbone's map is pooled before the head's own `pool`).
    pub recipe: FeatureRecipe,
    /// The augmented views the head was trained on besides the clean rows (`--augment K`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<crate::features::cache::AugmentInfo>,
}

/// Training settings and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// Seed of initialisation, split, shuffling and dropout.
    pub seed: u64,
    /// Maximum number of epochs asked for.
    pub epochs: usize,
    /// Epochs actually run (fewer with early stopping).
    pub epochs_run: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer, e.g. "adam(amsgrad)".
    pub optimizer: String,
    /// Early-stopping patience in epochs, if any.
    pub patience: Option<usize>,
    /// Fraction of the training split held out for validation.
    pub val_split: f32,
    /// Number of training examples used for gradient steps.
    pub train_examples: usize,
    /// Number of validation examples.
    pub valid_examples: usize,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// Validation loss of that epoch (absent without a validation split).
    pub best_valid_loss: Option<f32>,
    /// Wall time of training in seconds.
    pub seconds: f64,
}

/// run.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Always [`RUN_FORMAT`].
    pub format: String,
    /// [`RUN_FORMAT_VERSION`].
    pub version: u32,
    /// Class names; label i is `classes[i]`.
    pub classes: Vec<String>,
    /// The index of the background class (the camera's empty scene), when the features had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<usize>,
    /// How logits become scores.
    pub output: OutputKind,
    /// Decision threshold on the sigmoid score (sigmoid output only; 0.5 means logit ≥ 0).
    pub threshold: f32,
    /// The head.
    pub head: HeadSpec,
    /// Where its inputs came from.
    pub features: FeaturesRecord,
    /// How it was trained.
    pub training: TrainingRecord,
    /// The rejection of unknown images, when one was fitted (its bank is `unknown.safetensors`). Runs written
    /// before it existed have none.
    #[serde(default)]
    pub unknown: Option<UnknownRecord>,
}

impl RunConfig {
    /// Whether the run's rejection was calibrated on augmented (camera-like) views as well as photos: its
    /// threshold is then recalibrated on the views at export, and `--precision auto` keeps the backbone float.
    pub fn rejection_fitted_on_views(&self) -> bool {
        self.unknown
            .as_ref()
            .is_some_and(|u| u.calibrated_on_views > 0)
    }
}

/// A run directory loaded into memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// run.json.
    pub config: RunConfig,
    /// The weights.
    pub head: Head,
}

impl Run {
    /// Reads run.json and head.safetensors from `dir` and checks that they agree.
    pub fn load(dir: &Path) -> Result<Run, RunError> {
        let config_path = dir.join(RUN_FILE);
        if !config_path.is_file() {
            return Err(RunError::NotARun(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&config_path).map_err(|source| RunError::Io {
            path: config_path.clone(),
            source,
        })?;
        let json_err = |source| RunError::Json {
            path: config_path.clone(),
            source,
        };
        let mut json: serde_json::Value = serde_json::from_str(&text).map_err(json_err)?;
        let format = json.get("format").and_then(|f| f.as_str()).unwrap_or("");
        let version = json.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        match (format, version) {
            (RUN_FORMAT, 2) => {}
            (RUN_FORMAT, 1) => {
                if let Some(features) = json.get_mut("features") {
                    FeatureRecipe::nest_flat_fields(features);
                }
            }
            _ => {
                return Err(RunError::Version {
                    path: config_path,
                    found: format.to_string(),
                    version: u32::try_from(version).unwrap_or(u32::MAX),
                })
            }
        }
        let mut config: RunConfig = serde_json::from_value(json).map_err(json_err)?;
        config.version = RUN_FORMAT_VERSION;
        let head = load_head(&dir.join(HEAD_FILE), &config.head)?;
        Ok(Run { config, head })
    }

    /// Writes run.json and head.safetensors into `dir` (created if missing), each atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RunError> {
        self.head.validate()?;
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let weights = head_to_safetensors(&self.head).map_err(|source| RunError::Weights {
            path: dir.join(HEAD_FILE),
            source: Box::new(source.into()),
        })?;
        write_atomic(&dir.join(HEAD_FILE), &weights)?;
        let json = serde_json::to_vec_pretty(&self.config).map_err(|source| RunError::Json {
            path: dir.join(RUN_FILE),
            source,
        })?;
        Ok(write_atomic(&dir.join(RUN_FILE), &json)?)
    }

    /// The run's rejection of unknown images, if it has one.
    pub fn unknown_detector(
        &self,
        dir: &Path,
    ) -> Result<Option<UnknownDetector>, UnknownFileError> {
        self.config
            .unknown
            .as_ref()
            .map(|record| UnknownDetector::load(dir, record))
            .transpose()
    }

    /// Score of each class from one input's logits: sigmoid → [1 − p, p]; softmax → probabilities.
    pub fn scores(&self, logits: &[f32]) -> Vec<f32> {
        super::net::scores_from_logits(self.config.output, logits)
    }

    /// Predicted class index for one input's logits, honouring the threshold for sigmoid outputs.
    pub fn predict(&self, logits: &[f32]) -> usize {
        super::net::predict_from_logits(self.config.output, self.config.threshold, logits)
    }
}

fn head_to_safetensors(head: &Head) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for layer in &head.layers {
        buffers.push((
            format!("{}.weight", layer.name),
            vec![layer.outputs, layer.inputs],
            f32_bytes(&layer.weight),
        ));
        buffers.push((
            format!("{}.bias", layer.name),
            vec![layer.outputs],
            f32_bytes(&layer.bias),
        ));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, shape, bytes) in &buffers {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn load_head(path: &Path, spec: &HeadSpec) -> Result<Head, RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let weights_error = |source: WeightsError| RunError::Weights {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| weights_error(WeightsError::Safetensors(e)))?;
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, RunError> {
        let view = tensors
            .tensor(name)
            .map_err(|_| weights_error(WeightsError::Missing(name.to_string())))?;
        if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape {
            return Err(weights_error(WeightsError::Shape {
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
                shape: view.shape().to_vec(),
                expected: shape.to_vec(),
            }));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let widths: Vec<usize> = spec
        .kind
        .hidden_layers(spec.hidden)
        .into_iter()
        .chain([spec.outputs])
        .collect();
    if widths.len() != spec.layers.len() {
        return Err(HeadError::LayerCount {
            kind: spec.kind,
            expected: widths.len(),
            found: spec.layers.len(),
        }
        .into());
    }
    let mut inputs = spec.input_dim;
    let mut layers = Vec::with_capacity(widths.len());
    for (name, outputs) in spec.layers.iter().zip(widths) {
        layers.push(Dense {
            name: name.clone(),
            inputs,
            outputs,
            weight: read(&format!("{name}.weight"), &[outputs, inputs])?,
            bias: read(&format!("{name}.bias"), &[outputs])?,
        });
        inputs = outputs;
    }
    let head = Head {
        pool: spec.pool,
        input_shape: spec.input_shape.clone(),
        layers,
    };
    head.validate()?;
    Ok(head)
}

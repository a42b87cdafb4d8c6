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
//! [`Head::forward`] evaluates the head in plain Rust (no candle), so the export step can check the tract
//! graph it builds from these weights against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lookout_shared::PreprocessSpec;

pub use crate::features::BackboneInfo;
use serde::{Deserialize, Serialize};

/// File name of the run's configuration inside a run directory.
pub const RUN_FILE: &str = "run.json";
/// File name of the head's weights inside a run directory.
pub const HEAD_FILE: &str = "head.safetensors";
/// File name of the training history inside a run directory.
pub const HISTORY_FILE: &str = "history.json";
/// File name of the training curves inside a run directory.
pub const CURVES_FILE: &str = "curves.png";
/// File name of the confusion matrix picture inside a run directory.
pub const CONFUSION_FILE: &str = "confusion.png";
/// Value of `format` in run.json.
pub const RUN_FORMAT: &str = "lookout-run";
/// Version of the run.json layout this build writes and reads.
pub const RUN_FORMAT_VERSION: u32 = 1;

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
    #[error("{path}: run format {found:?} version {version} is not supported (this build reads {RUN_FORMAT:?} version {RUN_FORMAT_VERSION})")]
    Version {
        /// The file.
        path: PathBuf,
        /// The `format` found.
        found: String,
        /// The `version` found.
        version: u32,
    },
    /// head.safetensors is unreadable or does not match run.json.
    #[error("{path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The head description is inconsistent.
    #[error("invalid head: {0}")]
    Head(String),
}

/// The architecture of the classifier head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// The tutorial's: flatten → Linear(→hidden) → ReLU → Dropout → Linear(→outputs).
    Tutorial,
    /// Logistic regression: flatten → Linear(→outputs).
    Linear,
    /// Two hidden layers: Linear(→hidden) → ReLU → Dropout → Linear(→hidden) → ReLU → Dropout → Linear.
    Mlp,
}

impl HeadKind {
    /// Widths of the hidden layers for this kind.
    pub fn hidden_layers(self, hidden: usize) -> Vec<usize> {
        match self {
            HeadKind::Tutorial => vec![hidden],
            HeadKind::Linear => vec![],
            HeadKind::Mlp => vec![hidden, hidden],
        }
    }
}

/// Pooling applied to the cached features before the first layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Flatten the feature map as it is.
    None,
    /// Global average pooling: [C, H, W] → [C].
    Avg,
}

/// How logits become scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Two classes, one logit: score of `classes[1]` = sigmoid(logit); `classes[1]` when score ≥ threshold.
    Sigmoid,
    /// K classes, K logits, softmax; the arg-max wins.
    Softmax,
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
    pub pool: Pool,
    /// Shape of one cached feature vector as the head receives it, e.g. [1280, 7, 7] or [960].
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
    /// Shape of one cached feature vector.
    pub feature_shape: Vec<usize>,
    /// Whether the cache holds globally average-pooled features (then the backbone's map is pooled at
    /// extraction, before the head's own `pool`).
    pub pooled: bool,
    /// The backbone.
    pub backbone: BackboneInfo,
    /// Image preprocessing applied before the backbone.
    pub preprocess: PreprocessSpec,
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
}

/// One linear layer, PyTorch layout: `weight` is [outputs, inputs] row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Name prefix in head.safetensors (`fc1`, …).
    pub name: String,
    /// Number of inputs.
    pub inputs: usize,
    /// Number of outputs.
    pub outputs: usize,
    /// [outputs, inputs], row-major.
    pub weight: Vec<f32>,
    /// [outputs].
    pub bias: Vec<f32>,
}

/// A trained head: optional pooling, then linear layers with ReLU in between.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Pooling of the input.
    pub pool: Pool,
    /// Shape of one input as cached, e.g. [1280, 7, 7].
    pub input_shape: Vec<usize>,
    /// The linear layers.
    pub layers: Vec<Dense>,
}

impl Head {
    /// Checks that the layers chain and the pooling fits the input shape.
    pub fn validate(&self) -> Result<(), RunError> {
        let first_inputs = pooled_len(&self.input_shape, self.pool).ok_or_else(|| {
            RunError::Head(format!(
                "cannot {:?}-pool an input of shape {:?}",
                self.pool, self.input_shape
            ))
        })?;
        let mut expected = first_inputs;
        if self.layers.is_empty() {
            return Err(RunError::Head("the head has no layers".into()));
        }
        for layer in &self.layers {
            if layer.inputs != expected {
                return Err(RunError::Head(format!(
                    "{} takes {} inputs, expected {expected}",
                    layer.name, layer.inputs
                )));
            }
            if layer.weight.len() != layer.inputs * layer.outputs
                || layer.bias.len() != layer.outputs
            {
                return Err(RunError::Head(format!(
                    "{} has weights of the wrong size",
                    layer.name
                )));
            }
            expected = layer.outputs;
        }
        Ok(())
    }

    /// Number of f32 values of one input as cached.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Number of logits per input.
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Logits of `n` inputs laid out back to back (`features.len() == n * input_len()`), in eval mode
    /// (no dropout), `n * outputs()` values.
    ///
    /// # Panics
    /// If `features.len()` is not a multiple of [`Head::input_len`] — check it first with untrusted data.
    pub fn forward(&self, features: &[f32]) -> Vec<f32> {
        let input_len = self.input_len();
        assert!(
            input_len > 0 && features.len() % input_len == 0,
            "Head::forward: {} values is not a whole number of inputs of {input_len}",
            features.len()
        );
        let mut out = Vec::with_capacity(features.len() / input_len * self.outputs());
        for sample in features.chunks_exact(input_len) {
            let mut x = match self.pool {
                Pool::None => sample.to_vec(),
                Pool::Avg => global_average_pool(sample, &self.input_shape),
            };
            for (i, layer) in self.layers.iter().enumerate() {
                x = dense_forward(layer, &x);
                if i + 1 < self.layers.len() {
                    x.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
            out.extend_from_slice(&x);
        }
        out
    }
}

impl Head {
    /// [`Head::forward`] over many inputs, split across rayon's threads (same results).
    ///
    /// # Panics
    /// As [`Head::forward`].
    pub fn forward_parallel(&self, features: &[f32]) -> Vec<f32> {
        use rayon::prelude::*;
        let input_len = self.input_len().max(1);
        // Chunks of 16 inputs: enough work per task for the tutorial head's 16M-weight first layer.
        features
            .par_chunks(16 * input_len)
            .flat_map_iter(|chunk| self.forward(chunk))
            .collect()
    }
}

/// Inputs of the first layer after `pool` on one input of `shape`; `None` when pooling does not apply.
pub fn pooled_len(shape: &[usize], pool: Pool) -> Option<usize> {
    match pool {
        Pool::None => Some(shape.iter().product()),
        Pool::Avg => match shape {
            [c, _h, _w] => Some(*c),
            [c] => Some(*c),
            _ => None,
        },
    }
}

/// Mean over the spatial positions of one [C, H, W] map (or the vector itself when `shape` is [C]).
pub fn global_average_pool(sample: &[f32], shape: &[usize]) -> Vec<f32> {
    match shape {
        [_c, h, w] if h * w > 0 => {
            let area = h * w;
            sample
                .chunks_exact(area)
                .map(|plane| plane.iter().sum::<f32>() / area as f32)
                .collect()
        }
        _ => sample.to_vec(),
    }
}

fn dense_forward(layer: &Dense, x: &[f32]) -> Vec<f32> {
    layer
        .weight
        .chunks_exact(layer.inputs)
        .zip(&layer.bias)
        .map(|(row, b)| row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b)
        .collect()
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
        let config: RunConfig = serde_json::from_str(&text).map_err(|source| RunError::Json {
            path: config_path.clone(),
            source,
        })?;
        if config.format != RUN_FORMAT || config.version != RUN_FORMAT_VERSION {
            return Err(RunError::Version {
                path: config_path,
                found: config.format,
                version: config.version,
            });
        }
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
        let weights = head_to_safetensors(&self.head).map_err(|message| RunError::Weights {
            path: dir.join(HEAD_FILE),
            message,
        })?;
        write_atomic(&dir.join(HEAD_FILE), &weights)?;
        let json = serde_json::to_vec_pretty(&self.config).map_err(|source| RunError::Json {
            path: dir.join(RUN_FILE),
            source,
        })?;
        write_atomic(&dir.join(RUN_FILE), &json)
    }

    /// Score of each class from one input's logits: sigmoid → [1 − p, p]; softmax → probabilities.
    pub fn scores(&self, logits: &[f32]) -> Vec<f32> {
        scores_from_logits(self.config.output, logits)
    }

    /// Predicted class index for one input's logits, honouring the threshold for sigmoid outputs.
    pub fn predict(&self, logits: &[f32]) -> usize {
        predict_from_logits(self.config.output, self.config.threshold, logits)
    }
}

/// Class scores for one input's logits (see [`Run::scores`]).
pub fn scores_from_logits(output: OutputKind, logits: &[f32]) -> Vec<f32> {
    match output {
        OutputKind::Sigmoid => {
            let p = sigmoid(logits.first().copied().unwrap_or(0.0));
            vec![1.0 - p, p]
        }
        OutputKind::Softmax => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|e| e / sum).collect()
        }
    }
}

/// Predicted class for one input's logits (see [`Run::predict`]).
pub fn predict_from_logits(output: OutputKind, threshold: f32, logits: &[f32]) -> usize {
    match output {
        OutputKind::Sigmoid => {
            usize::from(sigmoid(logits.first().copied().unwrap_or(0.0)) >= threshold)
        }
        OutputKind::Softmax => {
            logits
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                    if l > best.1 {
                        (i, l)
                    } else {
                        best
                    }
                })
                .0
        }
    }
}

/// The logistic function, stable for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn head_to_safetensors(head: &Head) -> Result<Vec<u8>, String> {
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
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map_err(|e| format!("{name}: {e}"))?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn load_head(path: &Path, spec: &HeadSpec) -> Result<Head, RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let weights_error = |message: String| RunError::Weights {
        path: path.to_path_buf(),
        message,
    };
    let tensors =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| weights_error(e.to_string()))?;
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, RunError> {
        let view = tensors
            .tensor(name)
            .map_err(|_| weights_error(format!("missing tensor {name}")))?;
        if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape {
            return Err(weights_error(format!(
                "{name} is {:?} {:?}, run.json expects F32 {shape:?}",
                view.dtype(),
                view.shape()
            )));
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
        return Err(RunError::Head(format!(
            "{:?} head needs {} layers, run.json names {}",
            spec.kind,
            widths.len(),
            spec.layers.len()
        )));
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

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    lookout_shared::atomic::write_atomic(path, bytes).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_head(pool: Pool) -> Head {
        Head {
            pool,
            input_shape: vec![2, 1, 2],
            layers: vec![
                Dense {
                    name: "fc1".into(),
                    inputs: if pool == Pool::Avg { 2 } else { 4 },
                    outputs: 2,
                    weight: vec![],
                    bias: vec![0.5, -1.0],
                },
                Dense {
                    name: "fc2".into(),
                    inputs: 2,
                    outputs: 1,
                    weight: vec![1.0, -2.0],
                    bias: vec![0.25],
                },
            ],
        }
        .with_fc1(pool)
    }

    impl Head {
        fn with_fc1(mut self, pool: Pool) -> Head {
            self.layers[0].weight = if pool == Pool::Avg {
                vec![1.0, 2.0, -1.0, 1.0]
            } else {
                vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
            };
            self
        }
    }

    #[test]
    fn forward_matches_hand_computation() {
        // input [C=2, H=1, W=2] = [[1, 3], [2, -4]]
        let x = [1.0, 3.0, 2.0, -4.0];
        // avg pool → [2, -1]; fc1 = [[1,2],[-1,1]]·[2,-1] + [0.5,-1] = [0.5, -4]; relu → [0.5, 0];
        // fc2 = 0.5 − 0 + 0.25 = 0.75
        assert_eq!(tiny_head(Pool::Avg).forward(&x), vec![0.75]);
        // flat: fc1 rows pick x0 + x3 = −3 and x1 + x2 = 5 → [−2.5, 4]; relu → [0, 4]; fc2 = −8 + 0.25
        assert_eq!(tiny_head(Pool::None).forward(&x), vec![-7.75]);
        // two inputs back to back
        assert_eq!(
            tiny_head(Pool::Avg).forward(&[x, x].concat()),
            vec![0.75, 0.75]
        );
    }

    #[test]
    fn thresholds_and_softmax() {
        assert_eq!(predict_from_logits(OutputKind::Sigmoid, 0.5, &[0.1]), 1);
        assert_eq!(predict_from_logits(OutputKind::Sigmoid, 0.5, &[-0.1]), 0);
        assert_eq!(predict_from_logits(OutputKind::Sigmoid, 0.9, &[1.0]), 0);
        assert_eq!(
            predict_from_logits(OutputKind::Softmax, 0.5, &[0.1, 3.0, -1.0]),
            1
        );
        let s = scores_from_logits(OutputKind::Softmax, &[1000.0, 1000.0]);
        assert!((s[0] - 0.5).abs() < 1e-6 && (s[1] - 0.5).abs() < 1e-6);
        assert!((sigmoid(-100.0)).abs() < 1e-30 && sigmoid(100.0) == 1.0);
    }

    #[test]
    fn invalid_heads_are_rejected() {
        let mut head = tiny_head(Pool::Avg);
        head.layers[1].inputs = 3;
        assert!(head.validate().is_err());
        let mut head = tiny_head(Pool::Avg);
        head.input_shape = vec![2, 2];
        assert!(head.validate().is_err());
    }
}

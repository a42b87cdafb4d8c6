//! Training a classifier head on cached backbone features.
//!
//! # Why candle (and not burn)
//! Both were measured here (see the platform notes). burn 0.22 has Adam with AMSGrad built in, but its
//! wgpu backend takes ≈ 12 minutes to build on two cores and adds ≈ 50 MB to the binary; candle 0.11 on the
//! CPU builds in ≈ 3 minutes, adds ≈ 5 MB and ran a small MLP ≈ 2× faster per epoch than burn-wgpu on
//! a software Vulkan driver. The head is a few dense layers on cached features, where the CPU is plenty, so
//! candle it is; the missing piece, PyTorch's Adam with AMSGrad, is [`adam::Adam`].
//!
//! # Reproducibility
//! candle's CPU random generator cannot be seeded, so initialisation, the validation split, shuffling and
//! dropout masks all come from [`crate::rng::Rng`] streams derived from the one `seed`: a given seed on the same
//! features gives the same weights.

pub mod adam;
pub mod data;
mod epoch;
mod model;
pub mod session;

use std::time::Instant;

use candle_nn::Optimizer;
use serde::{Deserialize, Serialize};

pub use data::stratified_split;
pub use session::{train_features, TrainRunError, TrainedRun};

use lookout_shared::bundle::OutputKind;

use crate::features::pooling::Pooling;
use crate::features::FeatureRows;
use crate::head::net::{Head, HeadKind};
use crate::rng::Rng;
use adam::{Adam, AdamConfig};
use epoch::{check_rows, Step};
use model::CandleHead;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The data cannot be trained on as given.
    #[error("{0}")]
    Data(String),
    /// A setting is out of range.
    #[error("invalid training setting: {0}")]
    Config(String),
    /// The rows do not fit the feature shape.
    #[error(transparent)]
    Rows(#[from] crate::features::RowsError),
    /// The trained head does not validate (a bug: training builds it from its own shapes).
    #[error("the trained head is inconsistent: {0}")]
    Head(#[from] crate::head::net::HeadError),
    /// candle failed (a bug rather than bad input, as shapes are checked before).
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Settings of one training run; the defaults are the tutorial's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Head architecture.
    pub head: HeadKind,
    /// Width of the hidden layer(s).
    pub hidden: usize,
    /// Dropout probability after each hidden layer.
    pub dropout: f32,
    /// Pooling of the features before the head.
    pub pool: Pooling,
    /// Maximum number of passes over the training rows.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// AMSGrad variant of Adam (the tutorial's choice).
    pub amsgrad: bool,
    /// Seed of everything random.
    pub seed: u64,
    /// Stop after this many epochs without a lower validation loss.
    pub patience: Option<usize>,
    /// Fraction of the training rows held out (stratified) for validation and best-epoch selection.
    pub val_split: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            head: HeadKind::Tutorial,
            hidden: 256,
            dropout: 0.5,
            pool: Pooling::None,
            epochs: 5,
            batch: 64,
            lr: 1e-3,
            amsgrad: true,
            seed: 42,
            patience: None,
            val_split: 0.1,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return bad(format!(
                "--val-split must be in [0, 1), got {}",
                self.val_split
            ));
        }
        if self.head != HeadKind::Linear && self.hidden == 0 {
            return bad("--hidden must be at least 1".into());
        }
        if self.patience == Some(0) {
            return bad("--patience must be at least 1".into());
        }
        Ok(())
    }

    /// The optimizer as recorded in run.json.
    pub fn optimizer_name(&self) -> &'static str {
        if self.amsgrad {
            "adam(amsgrad)"
        } else {
            "adam"
        }
    }
}

/// Metrics of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Mean loss over the epoch's mini-batches (dropout on, weights moving).
    pub train_loss: f32,
    /// Accuracy over the same mini-batches.
    pub train_accuracy: f32,
    /// Loss on the validation rows after the epoch (dropout off).
    pub valid_loss: Option<f32>,
    /// Accuracy on the validation rows after the epoch.
    pub valid_accuracy: Option<f32>,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Everything history.json holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per epoch run.
    pub epochs: Vec<EpochRecord>,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// Whether early stopping ended training before `epochs`.
    pub stopped_early: bool,
}

/// What the caller hears while training runs (to draw progress bars).
#[derive(Debug)]
pub enum Progress<'a> {
    /// An epoch begins.
    EpochStart {
        /// 1-based.
        epoch: usize,
        /// Maximum.
        epochs: usize,
        /// Mini-batches in this epoch.
        batches: usize,
    },
    /// A mini-batch was applied.
    Batch {
        /// Its loss.
        loss: f32,
    },
    /// An epoch ended.
    EpochEnd(&'a EpochRecord),
}

/// A trained head and how it got there.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The best epoch's weights.
    pub head: Head,
    /// How its logits become scores.
    pub output: OutputKind,
    /// Per-epoch metrics.
    pub history: History,
    /// Validation loss of the best epoch.
    pub best_valid_loss: Option<f32>,
    /// Rows trained on.
    pub train_examples: usize,
    /// Rows held out.
    pub valid_examples: usize,
    /// Which rows of the training data were held out for validation (sorted); the rest were trained on.
    pub valid_rows: Vec<usize>,
    /// Wall time.
    pub seconds: f64,
}

// Independent random streams, so that e.g. changing the validation fraction does not change initialisation.
const STREAM_SPLIT: u64 = 0x5EED_0001;
const STREAM_INIT: u64 = 0x5EED_0002;
const STREAM_SHUFFLE: u64 = 0x5EED_0003;
const STREAM_DROPOUT: u64 = 0x5EED_0004;
const STREAM_VIEWS: u64 = 0x5EED_0005;

/// The (train, validation) row indices `train` holds out for `val_split` and `seed`: what a report needs to
/// look at the same validation rows again.
pub fn validation_split(labels: &[u32], val_split: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    stratified_split(labels, val_split, seed ^ STREAM_SPLIT)
}

/// Trains a head on `data` (the training split; rows of `input_shape` as cached, labels < `classes`).
///
/// A stratified `val_split` of the rows is held out; the weights of the epoch with the lowest validation
/// loss are kept (the last epoch's without a validation split). `views` are augmented views of the same rows
/// (each aligned row for row with `data`): every epoch, each training row is drawn from its clean features or
/// one of its views, uniformly; validation uses the clean rows only.
pub fn train(
    data: FeatureRows,
    views: Vec<FeatureRows>,
    input_shape: &[usize],
    classes: usize,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Trained, TrainError> {
    config.validate()?;
    let started = Instant::now();
    check_rows(&data, input_shape, classes, config)?;
    let data = data.pooled(input_shape, config.pool)?;
    let views = views
        .into_iter()
        .map(|v| {
            if v.len() != data.len() || v.labels != data.labels {
                return Err(TrainError::Data(format!(
                    "{} augmented rows do not match the {} clean rows",
                    v.len(),
                    data.len()
                )));
            }
            Ok(v.pooled(input_shape, config.pool)?)
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    let binary = classes == 2;
    let outputs = if binary { 1 } else { classes };
    let output = if binary {
        OutputKind::Sigmoid
    } else {
        OutputKind::Softmax
    };

    let (train_idx, valid_idx) = validation_split(&data.labels, config.val_split, config.seed);
    let valid = data.subset(&valid_idx);
    let train_rows = train_idx;

    let widths: Vec<usize> = config
        .head
        .hidden_layers(config.hidden)
        .into_iter()
        .chain([outputs])
        .collect();
    let model = CandleHead::init(
        data.dim,
        &widths,
        config.dropout,
        &mut Rng::new(config.seed ^ STREAM_INIT),
    )?;
    let adam_config = AdamConfig {
        lr: config.lr,
        amsgrad: config.amsgrad,
        ..AdamConfig::default()
    };
    let mut optimizer = Adam::new(model.vars(), adam_config)?;
    let mut shuffle_rng = Rng::new(config.seed ^ STREAM_SHUFFLE);
    let mut dropout_rng = Rng::new(config.seed ^ STREAM_DROPOUT);
    let mut view_rng = Rng::new(config.seed ^ STREAM_VIEWS);

    let mut history = History {
        epochs: Vec::new(),
        best_epoch: 0,
        stopped_early: false,
    };
    let mut best: Option<(f32, Vec<crate::head::net::Dense>)> = None;
    let mut order = train_rows.clone();
    let batches = order.len().div_ceil(config.batch);
    let mut batch_features = Vec::with_capacity(config.batch * data.dim);
    for epoch in 1..=config.epochs {
        progress(Progress::EpochStart {
            epoch,
            epochs: config.epochs,
            batches,
        });
        shuffle_rng.shuffle(&mut order);
        let mut step = Step {
            model: &model,
            optimizer: &mut optimizer,
            dropout_rng: &mut dropout_rng,
            batch_features: &mut batch_features,
            binary,
            views: &views,
            view_rng: &mut view_rng,
        };
        let record = step.epoch(epoch, &data, &order, &valid, config.batch, progress)?;
        let valid_loss = record.valid_loss;
        progress(Progress::EpochEnd(&record));
        history.epochs.push(record);
        // Without validation the last epoch wins; with it, the lowest validation loss (first one on ties).
        let improved = match (valid_loss, &best) {
            (None, _) | (Some(_), None) => true,
            (Some(l), Some((best_loss, _))) => l < *best_loss,
        };
        if improved {
            best = Some((valid_loss.unwrap_or(f32::NAN), model.snapshot()?));
            history.best_epoch = epoch;
        } else if let Some(patience) = config.patience {
            if epoch - history.best_epoch >= patience && epoch < config.epochs {
                history.stopped_early = true;
                break;
            }
        }
    }
    let Some((best_loss, layers)) = best else {
        return Err(TrainError::Data("no epoch was run".into()));
    };
    let head = Head {
        pool: config.pool,
        input_shape: input_shape.to_vec(),
        layers,
    };
    head.validate()?;
    Ok(Trained {
        head,
        output,
        history,
        best_valid_loss: (!valid.is_empty()).then_some(best_loss),
        train_examples: train_rows.len(),
        valid_rows: valid_idx,
        valid_examples: valid.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn plain_rust_forward_matches_the_candle_graph() {
        let mut rng = Rng::new(5);
        for widths in [vec![1], vec![7, 1], vec![6, 6, 4]] {
            let model = CandleHead::init(10, &widths, 0.5, &mut rng).unwrap();
            let x: Vec<f32> = (0..30).map(|_| rng.uniform(-2.0, 2.0)).collect();
            let candle_logits: Vec<f32> = model
                .forward(
                    &Tensor::from_slice(&x, (3, 10), &Device::Cpu).unwrap(),
                    None,
                )
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let head = Head {
                pool: Pooling::None,
                input_shape: vec![10],
                layers: model.snapshot().unwrap(),
            };
            let rust_logits = head.forward(&x);
            assert_eq!(rust_logits.len(), candle_logits.len());
            for (a, b) in rust_logits.iter().zip(&candle_logits) {
                // Different summation order only: measured ≤ 5e-7.
                assert!((a - b).abs() < 1e-5, "{rust_logits:?} vs {candle_logits:?}");
            }
        }
    }
}

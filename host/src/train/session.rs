//! One training run from a features cache to a run directory: what `lookout train` and `lookout fit` both do,
//! in one place (load the training split, train, record everything export needs, plot, then measure the test
//! split, which is looked at only once the weights are fixed).

use std::path::Path;

use crate::evaluate::{compute_metrics, EvaluateError, Metrics};
use crate::features::{FeatureSet, FeaturesError, Split};
use crate::run::{
    predict_from_logits, FeaturesRecord, HeadSpec, Pool, Run, RunConfig, RunError, TrainingRecord,
    CURVES_FILE, HISTORY_FILE, RUN_FORMAT, RUN_FORMAT_VERSION,
};

use super::{train, Dataset, History, Progress, TrainConfig, TrainError, Trained};

/// What can go wrong between a features cache and a saved run.
#[derive(Debug, thiserror::Error)]
pub enum TrainRunError {
    /// The cache cannot be read.
    #[error("reading the features: {0}")]
    Features(#[from] FeaturesError),
    /// The cache has no training rows.
    #[error("{} has no training rows; extract features from a non-empty data set", .0.display())]
    NoTrainingRows(std::path::PathBuf),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The run cannot be written.
    #[error("writing the run: {0}")]
    Run(#[from] RunError),
    /// The test metrics cannot be computed.
    #[error("evaluating on the test split: {0}")]
    Evaluate(#[from] EvaluateError),
}

/// A saved run with what training saw.
#[derive(Debug)]
pub struct TrainedRun {
    /// The run as saved.
    pub run: Run,
    /// Per-epoch metrics (also in history.json). Row counts are in `run.config.training`.
    pub history: History,
    /// Float metrics on the test split (`None` when the cache has no test rows).
    pub test_metrics: Option<Metrics>,
    /// True when `--pool avg` was asked on features that were pooled at extraction (nothing to do).
    pub pool_already_applied: bool,
}

/// Trains a head on the opened features cache and writes `run_dir` (run.json, head.safetensors,
/// history.json, curves.png); then measures the head on the test split.
pub fn train_features(
    features: &FeatureSet,
    run_dir: &Path,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainedRun, TrainRunError> {
    let features_dir = features.dir.as_path();
    let manifest = &features.manifest;
    let train_split = features.load_split(Split::Train)?;
    if train_split.is_empty() {
        return Err(TrainRunError::NoTrainingRows(features_dir.to_path_buf()));
    }
    // A pooled cache is [C] already: the head's own pooling has nothing to do, so record `none`.
    let pool_already_applied = config.pool == Pool::Avg && manifest.feature_shape.len() == 1;
    let config = if manifest.feature_shape.len() == 1 {
        TrainConfig {
            pool: Pool::None,
            ..config.clone()
        }
    } else {
        config.clone()
    };
    let data = Dataset::new(train_split.features, train_split.labels, train_split.dim)?;
    let trained = train(
        data,
        &manifest.feature_shape,
        manifest.classes.len(),
        &config,
        progress,
    )?;
    let features_record = FeaturesRecord {
        dir: std::path::absolute(features_dir).unwrap_or_else(|_| features_dir.to_path_buf()),
        feature_shape: manifest.feature_shape.clone(),
        pooled: manifest.pooled,
        backbone: manifest.backbone.clone(),
        preprocess: manifest.preprocess.clone(),
    };
    let history = trained.history.clone();
    let run = trained.into_run(&config, manifest.classes.clone(), features_record);
    run.save(run_dir)?;
    let history_path = run_dir.join(HISTORY_FILE);
    let history_json = serde_json::to_vec_pretty(&history).map_err(|source| RunError::Json {
        path: history_path.clone(),
        source,
    })?;
    crate::run::write_atomic(&history_path, &history_json)?;
    // A missing picture loses nothing the numbers do not hold: warn and go on.
    if let Err(e) = crate::plots::training_curves(&history.epochs, &run_dir.join(CURVES_FILE)) {
        eprintln!("warning: no training curves: {e}");
    }

    let test = features.load_split(Split::Test)?;
    let test_metrics = if test.is_empty() {
        None
    } else {
        let k = run.head.outputs();
        let predictions: Vec<usize> = run
            .head
            .forward_parallel(&test.features)
            .chunks(k)
            .map(|l| predict_from_logits(run.config.output, run.config.threshold, l))
            .collect();
        let labels: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
        Some(compute_metrics(&run.config.classes, &labels, &predictions)?)
    };
    Ok(TrainedRun {
        run,
        history,
        test_metrics,
        pool_already_applied,
    })
}

impl Trained {
    /// The run record of this training: everything export and evaluate need to rebuild the head and know what it
    /// was trained on (`features` says which cache, backbone and preprocessing).
    pub fn into_run(
        self,
        config: &TrainConfig,
        classes: Vec<String>,
        features: FeaturesRecord,
    ) -> Run {
        Run {
            config: RunConfig {
                format: RUN_FORMAT.into(),
                version: RUN_FORMAT_VERSION,
                classes,
                output: self.output,
                threshold: 0.5,
                head: HeadSpec {
                    kind: config.head,
                    hidden: config.hidden,
                    dropout: config.dropout,
                    pool: config.pool,
                    input_shape: features.feature_shape.clone(),
                    input_dim: self.head.layers[0].inputs,
                    outputs: self.head.outputs(),
                    layers: self.head.layers.iter().map(|l| l.name.clone()).collect(),
                },
                features,
                training: TrainingRecord {
                    seed: config.seed,
                    epochs: config.epochs,
                    epochs_run: self.history.epochs.len(),
                    batch: config.batch,
                    lr: config.lr,
                    optimizer: config.optimizer_name().into(),
                    patience: config.patience,
                    val_split: config.val_split,
                    train_examples: self.train_examples,
                    valid_examples: self.valid_examples,
                    best_epoch: self.history.best_epoch,
                    best_valid_loss: self.best_valid_loss,
                    seconds: self.seconds,
                },
            },
            head: self.head,
        }
    }
}

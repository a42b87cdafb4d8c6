//! One training run from a features cache to a run directory: what `lookout train` and `lookout fit` both do,
//! in one place (load the training split, train, record everything export needs). It returns the history;
//! the test split (`report::evaluate::float_test_metrics`) and the curves (`report::plots::training_curves`)
//! are the caller's, so training knows nothing of reports and never sees the test split.

use std::path::Path;

use super::{train, History, Progress, TrainConfig, TrainError, Trained};
use crate::features::{FeatureSet, FeaturesError, Pooling, Split};
use crate::head::run::{
    FeaturesRecord, HeadSpec, Run, RunConfig, RunError, TrainingRecord, HISTORY_FILE, RUN_FORMAT,
    RUN_FORMAT_VERSION,
};
use crate::head::unknown::{
    normalized_rows, UnknownConfig, UnknownDetector, UnknownError, UnknownFileError,
};

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
    /// The rejection of unknown images cannot be fitted.
    #[error(transparent)]
    Unknown(#[from] UnknownError),
    /// Its bank cannot be written.
    #[error("writing the rejection's bank: {0}")]
    UnknownFile(#[from] UnknownFileError),
}

/// The rows of `rows` (`[n, dim]`) not in `valid` (sorted indices), and those in it.
fn split_rows(rows: &[f32], dim: usize, valid: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    let mut next = valid.iter().peekable();
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        if next.peek() == Some(&&i) {
            next.next();
            held.extend_from_slice(row);
        } else {
            kept.extend_from_slice(row);
        }
    }
    (kept, held)
}

/// A saved run with what training saw.
#[derive(Debug)]
pub struct TrainedRun {
    /// The run as saved.
    pub run: Run,
    /// Per-epoch metrics (also in history.json). Row counts are in `run.config.training`.
    pub history: History,
    /// True when `--pool avg` was asked on features that were pooled at extraction (nothing to do).
    pub pool_already_applied: bool,
}

/// Trains a head on the opened features cache and writes `run_dir` (run.json, head.safetensors,
/// history.json); with `use_views`, on the cache's augmented views too.
pub fn train_features(
    features: &FeatureSet,
    run_dir: &Path,
    config: &TrainConfig,
    unknown: Option<&UnknownConfig>,
    use_views: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainedRun, TrainRunError> {
    let features_dir = features.dir.as_path();
    let manifest = &features.manifest;
    let train_split = features.load_split(Split::Train)?;
    if train_split.rows.is_empty() {
        return Err(TrainRunError::NoTrainingRows(features_dir.to_path_buf()));
    }
    // A pooled cache is [C] already: the head's own pooling has nothing to do, so record `none`.
    let pool_already_applied =
        config.pool == Pooling::Avg && manifest.recipe.feature_shape.len() == 1;
    let config = if manifest.recipe.feature_shape.len() == 1 {
        TrainConfig {
            pool: Pooling::None,
            ..config.clone()
        }
    } else {
        config.clone()
    };
    // The rejection measures in pooled, normalised feature space: computed before training consumes the rows.
    let normalized = match unknown {
        Some(_) => Some(normalized_rows(
            &train_split.rows.features,
            &manifest.recipe.feature_shape,
        )?),
        None => None,
    };
    let views = if use_views {
        features.load_views(&train_split)?
    } else {
        Vec::new()
    };
    let view_count = views.len();
    // The rejection with views (bank and calibration): the views in the same pooled, normalised space, before
    // training consumes them.
    let normalized_views = match unknown {
        Some(u) if u.on_views => views
            .iter()
            .map(|view| {
                normalized_rows(&view.features, &manifest.recipe.feature_shape)
                    .map(|(rows, _)| rows)
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let trained = train(
        train_split.rows,
        views,
        &manifest.recipe.feature_shape,
        manifest.classes.len(),
        &config,
        progress,
    )?;
    let features_record = FeaturesRecord {
        dir: std::path::absolute(features_dir).unwrap_or_else(|_| features_dir.to_path_buf()),
        recipe: manifest.recipe.clone(),
        augment: manifest
            .views
            .as_ref()
            .filter(|_| view_count > 0)
            .map(|v| v.info.clone()),
    };
    let history = trained.history.clone();
    let detector = match (unknown, normalized) {
        (Some(unknown), Some((rows, dim))) => {
            let (bank_rows, valid_rows) = split_rows(&rows, dim, &trained.valid_rows);
            // Each view goes where its photo went: the training photos' views are bank candidates, the
            // validation photos' views calibrate (a view of a bank photo would be scored against its own photo).
            let (mut bank_views, mut valid_views) = (Vec::new(), Vec::new());
            for view in &normalized_views {
                let (bank, valid) = split_rows(view, dim, &trained.valid_rows);
                bank_views.extend(bank);
                valid_views.extend(valid);
            }
            let mut detector = UnknownDetector::fit_with_views(
                &bank_rows,
                &bank_views,
                &valid_rows,
                &valid_views,
                dim,
                unknown,
            )?;
            // The bank's rows are the training split's rows less the validation ones.
            let positions: Vec<usize> = (0..rows.len() / dim)
                .filter(|i| trained.valid_rows.binary_search(i).is_err())
                .collect();
            detector.locate_sources(&positions);
            Some(detector)
        }
        _ => None,
    };
    let mut run = trained.into_run(&config, manifest.classes.clone(), features_record);
    run.config.unknown = detector.as_ref().map(UnknownDetector::record);
    run.config.background = manifest.background.map(|index| index as usize);
    run.save(run_dir)?;
    if let Some(detector) = &detector {
        detector.save_bank(run_dir)?;
    }
    let history_path = run_dir.join(HISTORY_FILE);
    let history_json = serde_json::to_vec_pretty(&history).map_err(|source| RunError::Json {
        path: history_path.clone(),
        source,
    })?;
    lookout_shared::atomic::write_atomic(&history_path, &history_json).map_err(RunError::from)?;

    Ok(TrainedRun {
        run,
        history,
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
                background: None,
                output: self.output,
                threshold: 0.5,
                head: HeadSpec {
                    kind: config.head,
                    hidden: config.hidden,
                    dropout: config.dropout,
                    pool: config.pool,
                    input_shape: features.recipe.feature_shape.clone(),
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
                unknown: None,
            },
            head: self.head,
        }
    }
}

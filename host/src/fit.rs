//! `lookout fit`: extract → train → evaluate → export in one go, for people who do not want the steps.
//!
//! Every intermediate is kept in a work folder (by default `<out stem>.lookout-work/` next to the bundle):
//!
//! ```text
//! WORK/features/   the features cache (reused when the data, backbone and recipe are unchanged)
//! WORK/run/        run.json, head.safetensors, history.json, curves.png, confusion.png
//! ```
//!
//! so that any step can be re-run by hand with the individual commands.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use lookout_shared::PreprocessSpec;
use serde::Serialize;

use crate::bundle::{export, ExportOptions, ExportPrecision, ExportReport};
use crate::features::device::DeviceChoice;
use crate::features::extract::{extract_folder, ExtractJob, ExtractReport, DEFAULT_SHARD_SIZE};
use crate::features::extractor::ExtractOptions;
use crate::features::FeatureSet;
use crate::features::Pooling;
use crate::head::run::{CONFUSION_FILE, CURVES_FILE};
use crate::head::train::{train_features, Progress, TrainConfig, TrainedRun};
use crate::head::unknown::UnknownConfig;
use crate::report::evaluate::Metrics;
use lookout_models::backbone::Backbone;

/// The backbone `fit` uses when none is given: the tutorial's, from the catalogue.
pub const DEFAULT_BACKBONE: &str = "mobilenet_v3_large";

/// What can go wrong in `fit`; each step's own error, said with the step's name.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The backbone could not be found or fetched (the error names it, and says what works offline).
    #[error(transparent)]
    Backbone(#[from] lookout_models::backbone::BackboneError),
    /// Extraction failed.
    #[error("extracting features: {0}")]
    Extract(#[from] crate::features::extractor::ExtractError),
    /// The features cache could not be read back.
    #[error("reading the features: {0}")]
    Features(#[from] crate::features::FeaturesError),
    /// The trained head cannot be measured on the test split.
    #[error("evaluating on the test split: {0}")]
    Evaluate(#[from] crate::report::evaluate::SplitMetricsError),
    /// Training failed.
    #[error("training: {0}")]
    Train(#[from] crate::head::train::TrainRunError),
    /// The run could not be written.
    #[error("writing the run: {0}")]
    Run(#[from] crate::head::run::RunError),
    /// Export failed or was refused.
    #[error("exporting: {0}")]
    Export(#[from] crate::bundle::ExportError),
    /// The data set has no test images to measure on.
    #[error(
        "the test split is empty: use a --test-split above 0 (and at least a few images per class)"
    )]
    NoTestImages,
    /// The work folder could not be created.
    #[error("creating the work folder {}: {source}", path.display())]
    WorkDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Settings of one `fit`.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// ImageFolder: one sub-folder of photos per class.
    pub data_dir: PathBuf,
    /// Frames of the camera's empty scene (`--background DIR`), learnt as one more answer: "nothing".
    pub background: Option<PathBuf>,
    /// The bundle to write.
    pub out: PathBuf,
    /// Catalogue name or model file.
    pub backbone: String,
    /// Preprocessing (required for a model file; overrides the catalogue's).
    pub preprocess: Option<PreprocessSpec>,
    /// Work folder; `None` = `<out stem>.lookout-work` next to `out`.
    pub work_dir: Option<PathBuf>,
    /// Global average pooling of the features at extraction.
    pub pool: Pooling,
    /// Fraction of each class held out as the test split.
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Training settings.
    pub train: TrainConfig,
    /// The rejection of unknown images fitted beside the head (`None`: every image gets a label).
    pub unknown: Option<UnknownConfig>,
    /// Export precision.
    pub precision: ExportPrecision,
    /// Largest accepted accuracy drop of the export, in points.
    pub max_drop_points: f32,
    /// Write the bundle even if the drop is larger.
    pub force: bool,
    /// Augmented views of the training photos (`--augment K`).
    pub augment: Option<crate::features::extract::AugmentJob>,
    /// Measure the bundle under camera conditions after export (`--conditions`).
    pub conditions: bool,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl FitOptions {
    /// Defaults for `data_dir` → `out`: the tutorial's backbone and head, a 20 % test split, f32.
    pub fn new(data_dir: impl Into<PathBuf>, out: impl Into<PathBuf>) -> FitOptions {
        FitOptions {
            data_dir: data_dir.into(),
            background: None,
            out: out.into(),
            backbone: DEFAULT_BACKBONE.to_string(),
            preprocess: None,
            work_dir: None,
            pool: Pooling::None,
            test_fraction: 0.2,
            seed: 42,
            train: TrainConfig::default(),
            unknown: Some(UnknownConfig::default()),
            precision: crate::bundle::precision::DEFAULT_PRECISION,
            max_drop_points: 1.0,
            force: false,
            augment: None,
            conditions: false,
            progress: false,
        }
    }

    /// The work folder these options use.
    pub fn resolved_work_dir(&self) -> PathBuf {
        if let Some(dir) = &self.work_dir {
            return dir.clone();
        }
        let stem = self
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let parent = self
            .out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        parent.join(format!("{stem}.lookout-work"))
    }
}

/// What `fit` did.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// The work folder.
    pub work_dir: PathBuf,
    /// The features cache.
    pub features_dir: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Backbone used.
    pub backbone: String,
    /// Whether the features cache was reused from an earlier `fit`/`extract`.
    pub features_reused: bool,
    /// Training images.
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
    /// Wall time of the extraction step, seconds (≈ 0 when the cache was reused).
    pub extract_seconds: f64,
    /// Backbone runs the extraction made (images and augmented views).
    pub backbone_runs: usize,
    /// Files skipped at extraction (unreadable images), with why.
    pub skipped: Vec<String>,
    /// Float test metrics of the trained head (on the cached features).
    pub float_metrics: Metrics,
    /// The export.
    pub export: ExportReport,
    /// Pictures written: training curves and confusion matrix.
    pub plots: Vec<PathBuf>,
    /// What went wrong without stopping the job (a picture that could not be drawn).
    pub warnings: Vec<String>,
    /// The fraction of held-out photos the rejection was calibrated to keep (`None`: no rejection).
    pub unknown_keep: Option<f32>,
    /// Augmented views per training photo the head was trained with (0: none).
    pub augment_views: u32,
    /// The background class (the camera's empty scene), when `--background` gave one: its label.
    pub background: Option<String>,
    /// The rejection as fitted: what its threshold was calibrated on.
    pub unknown: Option<crate::head::unknown::UnknownRecord>,
    /// The bundle under camera conditions (with `conditions`).
    pub conditions: Option<crate::report::conditions::ConditionsReport>,
    /// The command to run next, on the Pi.
    pub next: String,
}

/// Runs the whole job. Progress bars are shown only when `options.progress`; `on_step` hears each of the four
/// steps as it starts ("1/4 extracting …"), for the caller to print or not.
pub fn fit(options: &FitOptions, on_step: &mut dyn FnMut(&str)) -> Result<FitReport, FitError> {
    let work = options.resolved_work_dir();
    std::fs::create_dir_all(&work).map_err(|source| FitError::WorkDir {
        path: work.clone(),
        source,
    })?;
    let features_dir = work.join("features");
    let run_dir = work.join("run");

    let backbone = Backbone::resolve(&options.backbone, options.preprocess.clone())?;
    let views = options.augment.as_ref().map_or(0, |a| a.views);
    on_step(&format!(
        "1/4 extracting {} features from {}{}",
        backbone.name,
        options.data_dir.display(),
        match views {
            0 => String::new(),
            k => format!(
                " (each training photo {} times: 1 + {k} augmented views)",
                k + 1
            ),
        }
    ));
    let extracted = extract_step(options, &backbone, &features_dir)?;
    if extracted.test_images == 0 {
        return Err(FitError::NoTestImages);
    }

    on_step(&format!("2/4 training a {:?} head", options.train.head));
    let features = FeatureSet::open(&features_dir)?;
    let trained = train_step(options, &features, &run_dir)?;
    let float_metrics =
        crate::report::evaluate::float_test_metrics(&trained.run, &run_dir, &features)?
            .ok_or(FitError::NoTestImages)?;

    on_step("3/4 evaluating on the test split");
    // A missing picture loses nothing the numbers do not hold: say so and go on.
    let mut warnings = Vec::new();
    let mut plots = Vec::new();
    let curves = run_dir.join(CURVES_FILE);
    match crate::report::plots::training_curves(&trained.history.epochs, &curves) {
        Ok(()) => plots.push(curves),
        Err(e) => warnings.push(format!("no training curves: {e}")),
    }
    let confusion = run_dir.join(CONFUSION_FILE);
    match crate::report::plots::confusion_matrix(&float_metrics, &confusion) {
        Ok(()) => plots.push(confusion),
        Err(e) => warnings.push(format!("no confusion matrix picture: {e}")),
    }

    on_step(&format!(
        "4/4 exporting ({} precision) to {}",
        options.precision,
        options.out.display()
    ));
    let export_options = ExportOptions {
        precision: options.precision,
        max_drop_points: options.max_drop_points,
        force: options.force,
        progress: options.progress,
        ..ExportOptions::default()
    };
    let exported = export(&run_dir, &options.out, &export_options)?;
    if trained.run.config.rejection_fitted_on_views() && exported.precision.quantizes_weights() {
        // Measured on the fixed-camera scene (docs/camera.md): the gate checks accuracy, not this.
        warnings.push(format!(
            "the rejection was fitted on camera-like views, and a {} backbone rejects less well: on the \
             fixed-camera scene it accepted 4.2 % of photos of other things, f32-q4head 1.4 % (twice the \
             size); for a fixed camera, leave --precision at auto, which keeps the backbone float (docs/camera.md)",
            exported.precision
        ));
    }
    let conditions = if options.conditions {
        on_step("   measuring the bundle under camera conditions");
        let bar = crate::bundle::measure::progress_bar(0, "camera conditions", options.progress);
        let report =
            crate::report::conditions::evaluate_conditions(&exported.path, &run_dir, &bar)?;
        bar.finish_and_clear();
        let png = run_dir.join(crate::report::conditions::CONDITIONS_PLOT_FILE);
        match crate::report::plots::conditions_chart(&report, &png) {
            Ok(()) => plots.push(png),
            Err(e) => warnings.push(format!("no conditions chart: {e}")),
        }
        Some(report)
    } else {
        None
    };
    Ok(FitReport {
        work_dir: work,
        features_dir,
        run_dir,
        backbone: backbone.name,
        features_reused: extracted.reused,
        train_images: extracted.train_images,
        test_images: extracted.test_images,
        extract_seconds: extracted.seconds,
        backbone_runs: extracted.processed_images + extracted.processed_views,
        skipped: extracted
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.path.display(), s.reason))
            .collect(),
        float_metrics,
        next: format!(
            "lookout-edge classify --model {} PHOTO.jpg",
            exported.path.display()
        ),
        export: exported,
        plots,
        warnings,
        unknown_keep: trained.run.config.unknown.as_ref().map(|u| u.keep),
        augment_views: extracted.views,
        background: trained
            .run
            .config
            .background
            .and_then(|index| trained.run.config.classes.get(index).cloned()),
        unknown: trained.run.config.unknown.clone(),
        conditions,
    })
}

fn progress_bar(options: &FitOptions, length: u64) -> ProgressBar {
    if options.progress {
        ProgressBar::new(length)
    } else {
        ProgressBar::hidden()
    }
}

fn extract_step(
    options: &FitOptions,
    backbone: &Backbone,
    features_dir: &Path,
) -> Result<ExtractReport, FitError> {
    let bar = progress_bar(options, 0);
    let job = ExtractJob {
        data_dir: options.data_dir.clone(),
        background_dir: options.background.clone(),
        out_dir: features_dir.to_path_buf(),
        test_fraction: options.test_fraction,
        seed: options.seed,
        force: false,
        shard_size: DEFAULT_SHARD_SIZE,
        options: ExtractOptions {
            cut: None,
            pool: options.pool,
            device: DeviceChoice::Auto,
            batch: None,
        },
        augment: options.augment.clone(),
    };
    let extracted = extract_folder(&job, backbone, &bar)?;
    bar.finish_and_clear();
    Ok(extracted)
}

fn train_step(
    options: &FitOptions,
    features: &FeatureSet,
    run_dir: &Path,
) -> Result<TrainedRun, FitError> {
    let bar = progress_bar(options, options.train.epochs as u64);
    let mut on_progress = |event: Progress<'_>| {
        if let Progress::EpochEnd(record) = event {
            bar.inc(1);
            bar.set_message(format!("train loss {:.4}", record.train_loss));
        }
    };
    let trained = train_features(
        features,
        run_dir,
        &options.train,
        options.unknown.as_ref(),
        true,
        &mut on_progress,
    )?;
    bar.finish_and_clear();
    Ok(trained)
}

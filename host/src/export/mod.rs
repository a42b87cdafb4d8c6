//! `lookout export`: one combined, optionally reduced-precision model bundle for the edge.
//!
//! [`export`] loads a training run, rebuilds the backbone its features came from, appends the trained head
//! ([`graph::compose`]), checks the combined graph against the host's float pipeline, applies the asked
//! [`ExportPrecision`] ([`precision`]), and measures the result on the run's test images through
//! `lookout_runtime::Model`, exactly as the Pi will run it ([`measure`]). The measurements go into the bundle
//! header; an export that loses more accuracy than allowed is refused.

pub mod evaluate_bundle;
pub mod graph;
pub mod measure;
pub mod onnx;
pub mod precision;

use std::path::{Path, PathBuf};
use std::time::Instant;

use lookout_shared::bundle::{
    BackboneInfo, Bundle, BundleHeader, ExportMetrics, HeadInfo, ModelFormat,
    OutputKind as BundleOutput, Precision,
};
use serde::Serialize;
use tract_core::prelude::*;

use crate::features::{FeatureSet, Split, SplitFeatures};
use crate::run::{Head, HeadKind, OutputKind, Pool, Run, RunConfig};

pub use evaluate_bundle::{evaluate_bundle, predict_bundle, BundlePrediction, BundlePredictions};
pub use precision::ExportPrecision;

/// Largest probability difference accepted between the combined f32 graph and the host's float pipeline
/// (backbone → `Head::forward` → activation) before reduction. Both run the same tract ops on the same input, so
/// only summation order differs (the Lite0 test passes a 1e-6 bound); a wiring mistake gives 1e-2 and more.
pub const COMPOSE_TOLERANCE: f32 = 1e-5;

/// What can go wrong exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run directory is unusable.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// The run's features cache is unusable.
    #[error("the run's features cache: {0}")]
    Features(#[from] crate::features::FeaturesError),
    /// The backbone file cannot be loaded.
    #[error("backbone {}: {reason}", path.display())]
    Backbone {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The run and its backbone disagree.
    #[error("{0}")]
    Mismatch(String),
    /// tract refused to build the combined graph.
    #[error("building the combined graph: {0}")]
    Graph(String),
    /// The combined graph does not compute what the host computes.
    #[error(
        "the combined graph differs from the host's float pipeline by {max_diff:e} (limit {COMPOSE_TOLERANCE:e}) \
         on {image}; this is a lookout bug, please report it"
    )]
    ComposeCheck {
        /// Largest probability difference.
        max_diff: f32,
        /// The image it was seen on.
        image: PathBuf,
    },
    /// The precision reduction failed or is not available.
    #[error("{0}")]
    Precision(String),
    /// The ONNX copy (`--onnx`) cannot be written.
    #[error("--onnx: {0}")]
    Onnx(String),
    /// The model could not be serialised.
    #[error("serialising the model as NNEF: {0}")]
    Serialize(String),
    /// A test image could not be read.
    #[error("{}: {reason}", path.display())]
    Image {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The edge runtime refused the bundle.
    #[error("the edge runtime cannot run the exported model: {0}")]
    Runtime(#[from] lookout_runtime::RuntimeError),
    /// The test split is empty.
    #[error("the run's test split has no images: extract with a test fraction above 0 to measure an export")]
    NoTestImages,
    /// Accuracy fell by more than `--max-drop`.
    #[error(
        "the {precision} model scores {accuracy:.2}% on the test split against {float_accuracy:.2}% in float, a drop \
         of {drop:.2} points (over the {max_drop} allowed); nothing written: try another --precision, raise \
         --max-drop, or pass --force to write it anyway"
    )]
    AccuracyDrop {
        /// The precision.
        precision: ExportPrecision,
        /// Accuracy of the export, percent.
        accuracy: f32,
        /// Float accuracy, percent.
        float_accuracy: f32,
        /// Drop in points.
        drop: f32,
        /// Allowed drop in points.
        max_drop: f32,
    },
    /// Writing the bundle failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bundle could not be encoded.
    #[error("encoding the bundle: {0}")]
    Bundle(#[from] lookout_shared::BundleError),
}

/// Settings of one export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Numeric precision of the exported model.
    pub precision: ExportPrecision,
    /// Largest accepted accuracy drop against the float model, in percentage points.
    pub max_drop_points: f32,
    /// Write the bundle even when the accuracy drop is over `max_drop_points`.
    pub force: bool,
    /// Number of test images on which the combined f32 graph is checked against the float pipeline.
    pub compose_check_images: usize,
    /// Measure on at most this many test images (all when `None`).
    pub max_test_images: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Also write the float combined model as ONNX here (for other engines).
    pub onnx: Option<PathBuf>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            precision: ExportPrecision::F32,
            max_drop_points: 1.0,
            force: false,
            compose_check_images: 4,
            max_test_images: None,
            progress: false,
            onnx: None,
        }
    }
}

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
    /// The ONNX copy written (`--onnx`) and its size in bytes.
    pub onnx: Option<(PathBuf, u64)>,
}

/// Exports the run in `run_dir` as a bundle at `out` (written atomically, only if accepted).
pub fn export(
    run_dir: &Path,
    out: &Path,
    options: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let run = Run::load(run_dir)?;
    // Refuse before any slow work when the precision cannot be produced.
    precision::check_available(options.precision, &run.head)?;

    let test = load_test_split(run_dir, &run.config)?;
    let spec = &run.config.features.preprocess;
    let input_shape = spec
        .input_shape()
        .map_err(|e| ExportError::Mismatch(format!("the run's preprocessing recipe: {e}")))?
        .to_vec();
    let backbone_record = &run.config.features.backbone;
    let backbone = graph::load_backbone(
        &backbone_record.path,
        spec,
        backbone_record.cut.as_deref(),
        &input_shape,
    )?;
    let pooled = run.config.features.pooled;
    let combined = graph::compose(backbone.clone(), &run.head, pooled, run.config.output, None)?;
    let compose_check_diff =
        check_composition(&run, &backbone, &combined, &test, &input_shape, options)?;
    let combined = match options.precision {
        ExportPrecision::F32Q4Head => {
            let layer = precision::q4_layer(&run.head);
            graph::compose(backbone, &run.head, pooled, run.config.output, layer)?
        }
        _ => combined,
    };
    let test = subsample(test, options.max_test_images);
    let reduced = precision::apply(options.precision, combined)?;
    let model_bytes = graph::to_nnef_tar(&reduced)?;
    let model_size = model_bytes.len() as u64;

    let header = bundle_header(&run, &input_shape, options.precision);
    let bundle = Bundle {
        header,
        model: model_bytes,
    };
    let measured = measure::measure_bundle(bundle.clone(), &run, &test, options)?;

    let drop_points = (measured.float_accuracy - measured.accuracy) * 100.0;
    let over = drop_points > options.max_drop_points;
    if over && !options.force {
        return Err(ExportError::AccuracyDrop {
            precision: options.precision,
            accuracy: measured.accuracy * 100.0,
            float_accuracy: measured.float_accuracy * 100.0,
            drop: drop_points,
            max_drop: options.max_drop_points,
        });
    }
    // The ONNX copy is the float model: written once the export is accepted, so a refusal leaves no files.
    let onnx = match &options.onnx {
        Some(path) => Some((path.clone(), onnx::write_onnx(&run, path)?)),
        None => None,
    };
    let mut bundle = bundle;
    let metrics = ExportMetrics {
        accuracy: measured.accuracy,
        float_accuracy: measured.float_accuracy,
        agreement: measured.agreement,
        max_probability_diff: measured.max_probability_diff,
        test_images: measured.images as u32,
        load_ms: measured.load_ms,
        file_size: 0,
    };
    let bytes = encode_with_size(&mut bundle, metrics)?;
    write_atomic(out, &bytes).map_err(|source| ExportError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(ExportReport {
        path: out.to_path_buf(),
        precision: options.precision,
        file_size: bytes.len() as u64,
        model_size,
        accuracy: measured.accuracy,
        float_accuracy: measured.float_accuracy,
        agreement: measured.agreement,
        max_probability_diff: measured.max_probability_diff,
        test_images: measured.images,
        load_ms: measured.load_ms,
        mean_inference_ms: measured.mean_inference_ms,
        compose_check_diff,
        forced: over,
        head: bundle.header.head.description.clone(),
        onnx,
    })
}

/// The run's test split (paths, labels and cached float features), capped at `max_test_images` when asked.
pub fn load_test_split(run_dir: &Path, config: &RunConfig) -> Result<SplitFeatures, ExportError> {
    let dir = &config.features.dir;
    // A relative cache path was relative to where `train` ran; the run directory is the next best guess.
    let dir = if dir.is_relative() && !dir.exists() && run_dir.join(dir).exists() {
        run_dir.join(dir)
    } else {
        dir.clone()
    };
    let set = FeatureSet::open(&dir)?;
    let test = set.load_split(Split::Test)?;
    if test.is_empty() {
        return Err(ExportError::NoTestImages);
    }
    if test.dim != config.head.input_shape.iter().product::<usize>() {
        return Err(ExportError::Mismatch(format!(
            "the features cache {} holds vectors of {} values, the run's head takes {:?}: the run was trained on \
             another cache",
            dir.display(),
            test.dim,
            config.head.input_shape
        )));
    }
    Ok(test)
}

/// Keeps the first `limit` rows of a split, spread over it (every k-th row) so both classes stay present.
pub fn subsample(test: SplitFeatures, limit: Option<usize>) -> SplitFeatures {
    let Some(limit) = limit.filter(|&l| l > 0 && l < test.len()) else {
        return test;
    };
    let n = test.len();
    let picks: Vec<usize> = (0..limit).map(|i| i * n / limit).collect();
    let mut out = SplitFeatures {
        features: Vec::with_capacity(limit * test.dim),
        labels: vec![],
        paths: vec![],
        dim: test.dim,
    };
    for i in picks {
        out.features.extend_from_slice(test.row(i));
        out.labels.push(test.labels[i]);
        out.paths.push(test.paths[i].clone());
    }
    out
}

/// Runs the combined f32 graph and the host's float pipeline (the same backbone → [`Head::forward`] →
/// activation) on a few test images; fails if they disagree beyond [`COMPOSE_TOLERANCE`].
fn check_composition(
    run: &Run,
    backbone: &TypedModel,
    combined: &TypedModel,
    test: &SplitFeatures,
    input_shape: &[usize],
    options: &ExportOptions,
) -> Result<f32, ExportError> {
    let graph = |e: TractError| ExportError::Graph(format!("{e:#}"));
    let backbone_plan = backbone
        .clone()
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(graph)?;
    let combined_plan = combined
        .clone()
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(graph)?;
    let mut preprocessor =
        lookout_shared::preprocess::Preprocessor::new(&run.config.features.preprocess)
            .map_err(|e| ExportError::Mismatch(format!("the run's preprocessing recipe: {e}")))?;
    let pool_at_extraction = run.config.features.pooled;
    let mut worst = 0f32;
    let count = options.compose_check_images.min(test.len());
    for i in 0..count {
        let path = &test.paths[i * test.len() / count.max(1)];
        let image =
            lookout_shared::image_io::decode_file(path).map_err(|e| ExportError::Image {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let input = preprocessor.run(&image).map_err(|e| ExportError::Image {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut features = graph::run_once(&backbone_plan, input_shape, &input).map_err(graph)?;
        if pool_at_extraction {
            let shape = graph::output_shape(backbone)?;
            features = crate::run::global_average_pool(&features, &shape[1..]);
        }
        let expected = run.scores(&run.head.forward(&features));
        let got = graph::run_once(&combined_plan, input_shape, &input).map_err(graph)?;
        let got = expand_probabilities(run.config.output, &got);
        let diff = max_abs_diff(&expected, &got);
        if diff.is_nan() || diff > COMPOSE_TOLERANCE {
            return Err(ExportError::ComposeCheck {
                max_diff: diff,
                image: path.clone(),
            });
        }
        worst = worst.max(diff);
    }
    Ok(worst)
}

/// Class probabilities from a model's raw output: `[1 − p, p]` for sigmoid, as is for softmax.
pub fn expand_probabilities(output: OutputKind, raw: &[f32]) -> Vec<f32> {
    match output {
        OutputKind::Sigmoid => {
            let p = raw.first().copied().unwrap_or(f32::NAN);
            vec![1.0 - p, p]
        }
        OutputKind::Softmax => raw.to_vec(),
    }
}

/// Largest absolute difference of two equally long vectors (NaN if the lengths differ).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One line describing the head, e.g. `avgpool → Linear(1280,256) → ReLU → Dropout(0.5) → Linear(256,1) → sigmoid`.
pub fn describe_head(config: &RunConfig, head: &Head) -> String {
    let mut parts = Vec::new();
    if config.features.pooled || head.pool == Pool::Avg {
        parts.push("avgpool".to_string());
    }
    if head.input_shape.len() > 1 && head.pool == Pool::None {
        parts.push("flatten".to_string());
    }
    for (i, layer) in head.layers.iter().enumerate() {
        parts.push(format!("Linear({},{})", layer.inputs, layer.outputs));
        if i + 1 < head.layers.len() {
            parts.push("ReLU".into());
            if config.head.dropout > 0.0 {
                parts.push(format!("Dropout({})", config.head.dropout));
            }
        }
    }
    parts.push(match config.output {
        OutputKind::Sigmoid => "sigmoid".into(),
        OutputKind::Softmax => "softmax".into(),
    });
    parts.join(" → ")
}

fn bundle_header(run: &Run, input_shape: &[usize], precision: ExportPrecision) -> BundleHeader {
    let config = &run.config;
    let parameters: usize = run
        .head
        .layers
        .iter()
        .map(|l| l.weight.len() + l.bias.len())
        .sum();
    BundleHeader {
        labels: config.classes.clone(),
        preprocess: config.features.preprocess.clone(),
        backbone: BackboneInfo {
            name: config.features.backbone.name.clone(),
            sha256: config.features.backbone.sha256.clone(),
            cut: config.features.backbone.cut.clone(),
        },
        head: HeadInfo {
            kind: match config.head.kind {
                HeadKind::Tutorial => "tutorial",
                HeadKind::Linear => "linear",
                HeadKind::Mlp => "mlp",
            }
            .into(),
            description: describe_head(config, &run.head),
            parameters: parameters as u64,
        },
        precision: precision.bundle_precision().unwrap_or(Precision::F32),
        input_shape: input_shape.iter().map(|&d| d as u32).collect(),
        output: match config.output {
            OutputKind::Sigmoid => BundleOutput::Sigmoid,
            OutputKind::Softmax => BundleOutput::Softmax,
        },
        threshold: config.threshold,
        metrics: None,
        lookout_version: env!("CARGO_PKG_VERSION").to_string(),
        model_format: ModelFormat::NnefTar,
    }
}

/// Encodes the bundle with `metrics`, whose `file_size` is the size of the encoding itself (the size field is
/// a varint, so this settles in a couple of rounds).
fn encode_with_size(
    bundle: &mut Bundle,
    mut metrics: ExportMetrics,
) -> Result<Vec<u8>, ExportError> {
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bundle.header.metrics = Some(metrics.clone());
        bytes = bundle.to_bytes()?;
        if metrics.file_size == bytes.len() as u64 {
            break;
        }
        metrics.file_size = bytes.len() as u64;
    }
    Ok(bytes)
}

pub use lookout_shared::atomic::write_atomic;

/// Seconds since `start` as milliseconds.
pub(crate) fn elapsed_ms(start: Instant) -> f32 {
    start.elapsed().as_secs_f32() * 1000.0
}

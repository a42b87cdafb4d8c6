//! `lookout export`: one combined, optionally reduced-precision model bundle for the edge.
//!
//! [`export`] loads a training run, rebuilds the backbone its features came from, appends the trained head
//! ([`graph::compose`]), checks the combined graph against the host's float pipeline, applies the asked
//! [`ExportPrecision`] ([`precision`]), and measures the result on the run's test images through
//! `lookout_runtime::Model`, exactly as the Pi will run it ([`measure`]). The measurements go into the bundle
//! header; an export that loses more accuracy than allowed is refused.

pub mod check;
pub mod graph;
pub mod header;
pub mod measure;
pub mod onnx;
pub mod precision;

use std::path::{Path, PathBuf};
use std::time::Instant;

use lookout_shared::atomic::write_atomic;
use lookout_shared::bundle::{Bundle, ExportMetrics};
use serde::Serialize;
use tract_core::prelude::*;

use check::{check_composition, load_test_split, subsample};
use header::{bundle_header, encode_with_size};

use crate::head::run::Run;

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
    Run(#[from] crate::head::run::RunError),
    /// The run's features cache is unusable.
    #[error("the run's features cache: {0}")]
    Features(#[from] crate::features::FeaturesError),
    /// The backbone file the run records is gone.
    #[error(
        "backbone {}: the file is gone (the run records the backbone its features came from: put it back, or \
         extract and train again)",
        path.display()
    )]
    BackboneMissing {
        /// The file.
        path: PathBuf,
    },
    /// The backbone file cannot be loaded.
    #[error("backbone {}: {source}", path.display())]
    Backbone {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<lookout_models::backbone::BackboneError>,
    },
    /// The backbone has not one input and one output.
    #[error("backbone {}: it has {inputs} inputs and {outputs} outputs; a backbone needs one of each", path.display())]
    BackboneArity {
        /// The file.
        path: PathBuf,
        /// Its inputs.
        inputs: usize,
        /// Its outputs.
        outputs: usize,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The run and its backbone disagree.
    #[error("{0}")]
    Mismatch(String),
    /// tract failed building or running the combined graph.
    #[error("building the combined graph")]
    Graph(#[source] TractError),
    /// The backbone's output cannot take a head.
    #[error("building the combined graph: {0}")]
    GraphShape(String),
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
    /// The precision is not available for this run.
    #[error("{0}")]
    Precision(String),
    /// tract failed reducing the precision.
    #[error("applying {precision}")]
    PrecisionTransform {
        /// The precision.
        precision: ExportPrecision,
        /// Why.
        #[source]
        source: TractError,
    },
    /// The ONNX copy (`--onnx`) cannot be written.
    #[error("--onnx: {0}")]
    Onnx(String),
    /// The model could not be serialised.
    #[error("serialising the model as NNEF")]
    Serialize(#[source] TractError),
    /// A test image could not be read.
    #[error("{}: {source}", path.display())]
    Image {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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
    #[error(transparent)]
    Write(#[from] lookout_shared::atomic::WriteError),
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
    /// Fraction of the test photos (all of them of the classes) the bundle calls unknown; `None` without
    /// rejection.
    pub unknown_rate: Option<f32>,
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
        backbone_record.identity.cut.as_deref(),
        &input_shape,
    )?;
    let (combined, compose_check_diff) =
        combined_graph(&run, run_dir, backbone, &test, &input_shape, options)?;
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
    write_atomic(out, &bytes)?;
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
        unknown_rate: measured.unknown_rate,
        onnx,
    })
}

/// Backbone + head (+ the rejection's score) in one graph, checked against the host's float pipeline; for
/// `f32-q4head` composed again with the head's big layer block-quantized (the check runs on the float one).
fn combined_graph(
    run: &Run,
    run_dir: &Path,
    backbone: TypedModel,
    test: &crate::features::SplitFeatures,
    input_shape: &[usize],
    options: &ExportOptions,
) -> Result<(TypedModel, f32), ExportError> {
    let pooled = run.config.features.pooling == crate::features::Pooling::Avg;
    let unknown = run.unknown_detector(run_dir).map_err(|e| {
        ExportError::Mismatch(format!("the run's rejection of unknown images: {e}"))
    })?;
    let compose = |backbone: TypedModel, q4_layer: Option<usize>| {
        graph::compose(
            backbone,
            &run.head,
            pooled,
            run.config.output,
            q4_layer,
            unknown.as_ref(),
        )
    };
    let combined = compose(backbone.clone(), None)?;
    let diff = check_composition(
        run,
        unknown.as_ref(),
        &backbone,
        &combined,
        test,
        input_shape,
        options,
    )?;
    let combined = match options.precision {
        ExportPrecision::F32Q4Head => compose(backbone, precision::q4_layer(&run.head))?,
        _ => combined,
    };
    Ok((combined, diff))
}

/// Seconds since `start` as milliseconds.
pub(crate) fn elapsed_ms(start: Instant) -> f32 {
    start.elapsed().as_secs_f32() * 1000.0
}

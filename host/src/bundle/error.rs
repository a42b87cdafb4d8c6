//! What can go wrong exporting, each in one line with what to do.

use std::path::PathBuf;

use tract_core::prelude::TractError;

use super::{ExportPrecision, COMPOSE_TOLERANCE};

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
         of {drop:.2} points (over the {max_drop} allowed; tried {tried}); nothing written: try another \
         --precision, raise --max-drop, or pass --force to write it anyway"
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
        /// What was measured on the way, in words.
        tried: String,
    },
    /// Writing the bundle failed.
    #[error(transparent)]
    Write(#[from] lookout_shared::atomic::WriteError),
    /// The bundle could not be encoded.
    #[error("encoding the bundle: {0}")]
    Bundle(#[from] lookout_shared::BundleError),
}

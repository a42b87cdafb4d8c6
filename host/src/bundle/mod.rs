//! `lookout export`: one combined, optionally reduced-precision model bundle for the edge.
//!
//! [`export`] loads a training run, rebuilds the backbone its features came from, appends the trained head
//! ([`graph::compose`]), checks the combined graph against the host's float pipeline, applies the asked
//! [`ExportPrecision`] ([`precision`]), and measures the result on the run's test images through
//! `lookout_runtime::Model`, exactly as the Pi will run it ([`measure`]). The measurements go into the bundle
//! header; an export that loses more accuracy than allowed is refused.

pub mod check;
mod error;
pub mod graph;
pub mod header;
pub mod measure;
pub mod onnx;
pub mod precision;
pub mod quantize;
mod recalibrate;
mod report;
pub mod run;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lookout_shared::atomic::write_atomic;
use lookout_shared::bundle::{Bundle, ExportMetrics};
use tract_core::prelude::*;

use check::{check_composition, load_test_split, subsample};
use header::{bundle_header, encode_with_size};

use crate::head::run::Run;

pub use error::ExportError;
pub use precision::ExportPrecision;
use quantize::{LayerState, Sensitivity, WeightLayer};
use report::attempts_line;
pub use report::{Attempt, ExportReport, Skipped, WeightsReport};

/// Largest probability difference accepted between the combined f32 graph and the host's float pipeline
/// (backbone → `Head::forward` → activation) before reduction. Both run the same tract ops on the same input, so
/// only summation order differs (the Lite0 test passes a 1e-6 bound); a wiring mistake gives 1e-2 and more.
pub const COMPOSE_TOLERANCE: f32 = 1e-5;

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
    /// How long the accuracy gate may take on the whole test split before it measures a sample instead
    /// (unless `max_test_images` is set).
    pub gate_budget: std::time::Duration,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            precision: precision::DEFAULT_PRECISION,
            max_drop_points: 1.0,
            force: false,
            compose_check_images: 4,
            max_test_images: None,
            progress: false,
            onnx: None,
            gate_budget: measure::GATE_BUDGET,
        }
    }
}

/// Exports the run in `run_dir` as a bundle at `out` (written atomically, only if accepted).
pub fn export(
    run_dir: &Path,
    out: &Path,
    options: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let run = Run::load(run_dir)?;
    // Refuse before any slow work when the precision cannot be produced.
    if options.precision != ExportPrecision::Auto {
        precision::check_available(options.precision, &run.head)?;
    }

    let test = load_test_split(run_dir, &run.config)?;
    let spec = &run.config.features.recipe.preprocess;
    let input_shape = spec
        .input_shape()
        .map_err(|e| ExportError::Mismatch(format!("the run's preprocessing recipe: {e}")))?
        .to_vec();
    let backbone_record = &run.config.features.recipe.backbone;
    let backbone = graph::load_backbone(
        &backbone_record.path,
        spec,
        backbone_record.identity.cut.as_deref(),
        &input_shape,
    )?;
    let unknown = run.unknown_detector(run_dir).map_err(|e| {
        ExportError::Mismatch(format!("the run's rejection of unknown images: {e}"))
    })?;
    let composer = Composer {
        run: &run,
        unknown: unknown.as_ref(),
        backbone,
    };
    let combined = composer.compose(None)?;
    let compose_check_diff = check_composition(
        &run,
        unknown.as_ref(),
        &composer.backbone,
        &combined,
        &test,
        &input_shape,
        options,
    )?;
    let test = subsample(test, options.max_test_images);

    // A rejection fitted on camera-like views loses more to a 4-bit backbone than the gate can see (it measures
    // accuracy, and has no photos of other things): on the fixed-camera scene the q4 bundle accepted 4.2 % of
    // them, f32-q4head 1.4 % (docs/camera.md). `auto` keeps the backbone float there; a named q4 is still made.
    let camera_rejection = run.config.rejection_fitted_on_views();
    let mut skipped = Vec::new();
    let candidates: Vec<ExportPrecision> = match options.precision {
        ExportPrecision::Auto => precision::AUTO_CANDIDATES
            .into_iter()
            .filter(|p| precision::check_available(*p, &run.head).is_ok())
            .filter(|&p| {
                let skip = camera_rejection && p.quantizes_weights();
                if skip {
                    skipped.push(Skipped {
                        precision: p,
                        reason: CAMERA_REJECTION_SKIP.to_string(),
                    });
                }
                !skip
            })
            .collect(),
        precision => vec![precision],
    };
    let train_images = recalibrate::TrainImages::of_run(&run, run_dir)?;
    let validation = train_images.validation_paths(&run.config);
    let calibration =
        recalibrate::CalibrationImages::of_run(&run, &train_images, validation.clone());
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut sensitivity: Option<Vec<Sensitivity>> = None;
    let mut accepted = None;
    for &precision in &candidates {
        let mut keep_float = BTreeSet::new();
        loop {
            let started = std::time::Instant::now();
            let (reduced, layers) = match precision {
                ExportPrecision::F32Q4Head => (
                    composer.compose(precision::q4_layer(&run.head))?,
                    Vec::new(),
                ),
                _ => precision::apply(precision, combined.clone(), &keep_float)?,
            };
            // The rejection's bank through the 4-bit backbone, as frames will be (f16-q4: its f32 twin's, the
            // same 4-bit weights: f16 is emulated on x86, ≈ 17 s an image); then the graph again with it.
            let rebanked = match (precision.quantizes_weights(), composer.unknown) {
                (true, Some(detector)) => {
                    let q4_twin;
                    let weights_moved = if precision == ExportPrecision::F16Q4 {
                        q4_twin =
                            precision::apply(ExportPrecision::Q4, combined.clone(), &keep_float)?.0;
                        &q4_twin
                    } else {
                        &reduced
                    };
                    recalibrate::quantized_bank(
                        weights_moved,
                        &input_shape,
                        &run,
                        &train_images,
                        detector,
                    )?
                    .map(|bank| {
                        Composer {
                            unknown: Some(&bank),
                            backbone: composer.backbone.clone(),
                            ..composer
                        }
                        .compose(None)
                    })
                    .transpose()?
                }
                _ => None,
            };
            // The float graph this try quantizes: with the bank computed again when it was.
            let combined = rebanked.as_ref().unwrap_or(&combined);
            let reduced = match &rebanked {
                Some(graph) => precision::apply(precision, graph.clone(), &keep_float)?.0,
                None => reduced,
            };
            let model_bytes = graph::to_nnef_tar_gz(&reduced)?;
            drop(reduced);
            let mut bundle = Bundle {
                header: bundle_header(&run, &input_shape, precision),
                model: model_bytes,
            };
            if precision.quantizes_weights() && bundle.header.unknown.is_some() {
                // f16 arithmetic is emulated on x86 (≈ 17 s an image), so f16-q4 is calibrated on its f32 twin:
                // the same 4-bit weights, whose rounding is what moves the scores (f16 moves logits ≤ 2e-4).
                let twin = match precision {
                    ExportPrecision::F16Q4 => Bundle {
                        header: bundle.header.clone(),
                        model: graph::to_nnef_tar_gz(
                            &precision::apply(ExportPrecision::Q4, combined.clone(), &keep_float)?
                                .0,
                        )?,
                    },
                    _ => bundle.clone(),
                };
                let threshold = recalibrate::rejection_threshold(twin, &calibration)?;
                if let (Some(unknown), Some(threshold)) =
                    (bundle.header.unknown.as_mut(), threshold)
                {
                    unknown.threshold = threshold;
                }
            }
            let measured =
                measure::measure_bundle(bundle.clone(), &run, &test, precision, options)?;
            let drop_points = (measured.float_accuracy - measured.accuracy) * 100.0;
            attempts.push(Attempt {
                precision,
                kept_float: keep_float.iter().cloned().collect(),
                model_size: bundle.model.len() as u64,
                accuracy: measured.accuracy,
                agreement: measured.agreement,
                drop_points,
                seconds: started.elapsed().as_secs_f32(),
            });
            let within = drop_points <= options.max_drop_points;
            // A block-quantized model over the gate gets another try with its most sensitive layers float:
            // one, then twice as many each time, at most MAX_KEPT_FLOAT.
            if within || !precision.quantizes_weights() || keep_float.len() >= MAX_KEPT_FLOAT {
                accepted = Some((precision, bundle, measured, layers, within));
                break;
            }
            let ranking = match &sensitivity {
                Some(ranking) => ranking,
                None => sensitivity.insert(calibrated_sensitivity(
                    &run,
                    &validation,
                    combined,
                    &layers,
                    &input_shape,
                )?),
            };
            let more = keep_float.len().max(1);
            // Float where it buys the most per byte: the output change a layer causes over the bytes it takes
            // float (Lite0's most sensitive layers are its first, narrowest projections: a few kilobytes).
            let mut by_value: Vec<&Sensitivity> = ranking.iter().collect();
            let size = |name: &str| {
                layers
                    .iter()
                    .find(|l| l.name == name)
                    .map_or(usize::MAX, |l| l.weights().max(1)) as f64
            };
            by_value.sort_by(|a, b| {
                let value = |s: &Sensitivity| f64::from(s.relative_error) / size(&s.name);
                value(b).total_cmp(&value(a))
            });
            let next: Vec<String> = by_value
                .iter()
                .map(|s| s.name.clone())
                .filter(|name| !keep_float.contains(name))
                .take(more.min(MAX_KEPT_FLOAT - keep_float.len()))
                .collect();
            if next.is_empty() {
                accepted = Some((precision, bundle, measured, layers, within));
                break;
            }
            keep_float.extend(next);
        }
        if matches!(accepted, Some((.., true))) {
            break;
        }
    }
    let Some((precision, bundle, measured, layers, within)) = accepted else {
        return Err(ExportError::Precision(
            "--precision auto: no precision can be produced for this head".into(),
        ));
    };
    let drop_points = (measured.float_accuracy - measured.accuracy) * 100.0;
    if !within && !options.force {
        return Err(ExportError::AccuracyDrop {
            precision,
            accuracy: measured.accuracy * 100.0,
            float_accuracy: measured.float_accuracy * 100.0,
            drop: drop_points,
            max_drop: options.max_drop_points,
            tried: attempts_line(&attempts),
        });
    }
    let model_size = bundle.model.len() as u64;
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
    let weights = (!layers.is_empty()).then(|| WeightsReport::new(&layers, sensitivity.as_deref()));
    Ok(ExportReport {
        path: out.to_path_buf(),
        precision,
        file_size: bytes.len() as u64,
        model_size,
        accuracy: measured.accuracy,
        float_accuracy: measured.float_accuracy,
        agreement: measured.agreement,
        max_probability_diff: measured.max_probability_diff,
        test_images: measured.images,
        gate_sample: measured.sample.clone(),
        load_ms: measured.load_ms,
        mean_inference_ms: measured.mean_inference_ms,
        compose_check_diff,
        forced: !within,
        head: bundle.header.head.description.clone(),
        unknown_rate: measured.unknown_rate,
        onnx,
        weights,
        attempts,
        skipped,
    })
}

/// Why `--precision auto` does not try a 4-bit backbone for a rejection fitted on camera-like views.
pub const CAMERA_REJECTION_SKIP: &str =
    "the rejection was fitted on camera-like views, and a 4-bit backbone \
     rejects less well (fixed-camera scene: 4.2 % of other photos accepted, f32-q4head 1.4 %); \
     --precision q4 makes it anyway";

/// At most this many weight layers are kept float to bring a block-quantized model within the gate; past that
/// the precision is refused (or `auto` goes on to a larger one), since the size it saves is mostly gone.
pub const MAX_KEPT_FLOAT: usize = 8;

/// Number of training photos the sensitivity check runs the float model on.
pub const CALIBRATION_IMAGES: usize = 8;

/// [`quantize::layer_sensitivity`] of the block-quantizable layers on [`CALIBRATION_IMAGES`] validation
/// photos, spread over them (never the test photos the gate measures on).
fn calibrated_sensitivity(
    run: &Run,
    validation: &[PathBuf],
    combined: &TypedModel,
    layers: &[WeightLayer],
    input_shape: &[usize],
) -> Result<Vec<Sensitivity>, ExportError> {
    let names: Vec<String> = layers
        .iter()
        .filter(|l| l.state != LayerState::FloatPartialBlocks)
        .map(|l| l.name.clone())
        .collect();
    let n = validation.len();
    let count = CALIBRATION_IMAGES.min(n);
    let paths: Vec<PathBuf> = (0..count)
        .map(|i| validation[i * n / count].clone())
        .collect();
    let inputs = check::preprocess_files(run, &paths)?;
    let score = run
        .config
        .unknown
        .is_some()
        .then_some(graph::OOD_SCORE_NODE);
    quantize::layer_sensitivity(
        combined,
        &names,
        graph::OUTPUT_NODE,
        score,
        input_shape,
        &inputs,
    )
    .map_err(ExportError::Graph)
}

/// Composes the run's backbone and head (and the rejection's score) into one graph.
struct Composer<'a> {
    run: &'a Run,
    unknown: Option<&'a crate::head::unknown::UnknownDetector>,
    backbone: TypedModel,
}

impl Composer<'_> {
    /// The combined graph; `q4_layer` stores that head layer's weight block-quantized (`f32-q4head`).
    fn compose(&self, q4_layer: Option<usize>) -> Result<TypedModel, ExportError> {
        graph::compose(
            self.backbone.clone(),
            &self.run.head,
            self.run.config.features.recipe.pooling == crate::features::Pooling::Avg,
            self.run.config.output,
            q4_layer,
            self.unknown,
        )
    }
}

/// Seconds since `start` as milliseconds.
pub(crate) fn elapsed_ms(start: Instant) -> f32 {
    start.elapsed().as_secs_f32() * 1000.0
}

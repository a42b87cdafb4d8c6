//! What an export checks before it writes anything: the run's test split it measures on, and that the
//! combined f32 graph computes what the host's float pipeline computes.

use std::path::{Path, PathBuf};

use lookout_shared::bundle::OutputKind;
use tract_core::prelude::*;

use super::{graph, ExportError, ExportOptions, COMPOSE_TOLERANCE};
use crate::features::{FeatureSet, Pooling, Split, SplitFeatures};
use crate::head::run::{Run, RunConfig};
use crate::head::unknown::{normalized_rows, UnknownDetector};

/// The run's test split (paths, labels and cached float features), capped at `max_test_images` when asked.
pub fn load_test_split(run_dir: &Path, config: &RunConfig) -> Result<SplitFeatures, ExportError> {
    let dir = features_dir(run_dir, config);
    let set = FeatureSet::open(&dir)?;
    let test = set.load_split(Split::Test)?;
    if test.rows.is_empty() {
        return Err(ExportError::NoTestImages);
    }
    if test.rows.dim != config.head.input_shape.iter().product::<usize>() {
        return Err(ExportError::Mismatch(format!(
            "the features cache {} holds vectors of {} values, the run's head takes {:?}: the run was trained on \
             another cache",
            dir.display(),
            test.rows.dim,
            config.head.input_shape
        )));
    }
    Ok(test)
}

/// The run's features cache directory.
pub fn features_dir(run_dir: &Path, config: &RunConfig) -> PathBuf {
    let dir = &config.features.dir;
    // A relative cache path was relative to where `train` ran; the run directory is the next best guess.
    if dir.is_relative() && !dir.exists() && run_dir.join(dir).exists() {
        run_dir.join(dir)
    } else {
        dir.clone()
    }
}

/// Decodes and preprocesses image files with the run's recipe, as the edge does.
pub fn preprocess_files(run: &Run, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>, ExportError> {
    let mut preprocessor =
        lookout_shared::preprocess::Preprocessor::new(&run.config.features.recipe.preprocess)
            .map_err(|e| ExportError::Mismatch(format!("the run's preprocessing recipe: {e}")))?;
    paths
        .iter()
        .map(|path| {
            let image = lookout_shared::image_io::decode_file_for(path, preprocessor.spec(), &[])
                .map_err(|e| ExportError::Image {
                path: path.clone(),
                source: e.into(),
            })?;
            preprocessor.run(&image).map_err(|e| ExportError::Image {
                path: path.clone(),
                source: e.into(),
            })
        })
        .collect()
}

/// Keeps the first `limit` rows of a split, spread over it (every k-th row) so both classes stay present.
pub fn subsample(test: SplitFeatures, limit: Option<usize>) -> SplitFeatures {
    let Some(limit) = limit.filter(|&l| l > 0 && l < test.rows.len()) else {
        return test;
    };
    let n = test.rows.len();
    let picks: Vec<usize> = (0..limit).map(|i| i * n / limit).collect();
    SplitFeatures {
        rows: test.rows.subset(&picks),
        paths: picks.iter().map(|&i| test.paths[i].clone()).collect(),
        positions: picks.iter().map(|&i| test.positions[i]).collect(),
    }
}

/// Runs the combined f32 graph and the host's float pipeline (the same backbone → [`Head::forward`](crate::head::net::Head::forward) →
/// activation, and the rejection's score) on a few test images; fails if they disagree beyond
/// [`COMPOSE_TOLERANCE`].
pub fn check_composition(
    run: &Run,
    unknown: Option<&UnknownDetector>,
    backbone: &TypedModel,
    combined: &TypedModel,
    test: &SplitFeatures,
    input_shape: &[usize],
    options: &ExportOptions,
) -> Result<f32, ExportError> {
    let graph = ExportError::Graph;
    let backbone_plan = lookout_runtime::plan::optimize(backbone.clone())
        .and_then(|m| m.into_runnable())
        .map_err(graph)?;
    let combined_plan = lookout_runtime::plan::optimize(combined.clone())
        .and_then(|m| m.into_runnable())
        .map_err(graph)?;
    let pool_at_extraction = run.config.features.recipe.pooling == Pooling::Avg;
    let mut worst = 0f32;
    let count = options.compose_check_images.min(test.rows.len());
    let paths: Vec<PathBuf> = (0..count)
        .map(|i| test.paths[i * test.rows.len() / count.max(1)].clone())
        .collect();
    let inputs = preprocess_files(run, &paths)?;
    for (path, input) in paths.iter().zip(&inputs) {
        let mut features =
            super::run::run_once(&backbone_plan, input_shape, input).map_err(graph)?;
        let shape = graph::output_shape(backbone)?;
        let mut feature_shape = shape[1..].to_vec();
        if pool_at_extraction {
            features = crate::features::pooling::global_average_pool(&features, &feature_shape);
            feature_shape.truncate(1);
        }
        let mut expected = run.scores(&run.head.forward(&features));
        let outputs = super::run::run_all(&combined_plan, input_shape, input).map_err(graph)?;
        let mut got = expand_probabilities(run.config.output, &outputs[0]);
        if let Some(detector) = unknown {
            // The score is compared like one more probability.
            let (unit, _) = normalized_rows(&features, &feature_shape)
                .map_err(|e| ExportError::Mismatch(e.to_string()))?;
            expected.extend(detector.scores(&unit));
            got.extend(outputs.get(1).into_iter().flatten().copied());
        }
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

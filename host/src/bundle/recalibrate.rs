//! The rejection of a 4-bit bundle, fitted again to what its backbone computes.
//!
//! 4-bit weights move the backbone's features and so every score (Lite0 in Q4_0: the float threshold called
//! 37 % of the test photos unknown instead of 5 %). Two things are therefore done again with the 4-bit
//! backbone: the bank (each bank row's image, a training photo or one of its views, through the 4-bit
//! backbone, so that a frame's features and the bank's are moved alike; against the float bank the scores of
//! degraded frames rose most, and the threshold calibrated on them let in five times the photos of other
//! things), and the threshold: the same `keep` quantile training took, of the same images, as the bundle scores
//! them: the validation photos, and when training calibrated on their augmented views too, those views, drawn
//! again (a view is a function of the photo, its key in the data set, the view number and the seed).

use std::path::{Path, PathBuf};

use lookout_runtime::{Model, RuntimeOptions};
use lookout_shared::bundle::Bundle;
use lookout_shared::preprocess::Preprocessor;
use rayon::prelude::*;
use tract_core::prelude::*;

use super::{measure, ExportError};
use crate::features::{FeatureSet, Split};
use crate::head::run::{Run, RunConfig};
use crate::head::unknown::UnknownDetector;
use crate::transform::AugmentPolicy;

/// The node of the combined graph that gives the normalised, pooled features the bank is compared with.
const NORMALIZED_FEATURES_NODE: &str = "lookout_unknown.normalize";

/// `detector` with its bank computed again by `quantized` (a 4-bit combined graph of the run, f32
/// arithmetic): each bank row's image through its backbone. `None` when the run does not record where its
/// bank rows came from (runs from before it did): the float bank is kept then.
pub fn quantized_bank(
    quantized: &TypedModel,
    input_shape: &[usize],
    run: &Run,
    run_dir: &Path,
    detector: &UnknownDetector,
) -> Result<Option<UnknownDetector>, ExportError> {
    if detector.sources.len() != detector.bank_size() || detector.sources.is_empty() {
        return Ok(None);
    }
    let set = FeatureSet::open(super::check::features_dir(run_dir, &run.config))?;
    let (paths, _) = set.split_index(Split::Train)?;
    let root = set.manifest.data_root.clone();
    let policy = match &run.config.features.augment {
        Some(augment) => Some((
            augment.policy.parse::<AugmentPolicy>().map_err(|e| {
                ExportError::Mismatch(format!("the run's augmentation policy: {e}"))
            })?,
            augment.seed,
        )),
        None => None,
    };
    let graph = ExportError::Graph;
    let mut features = quantized.clone();
    let node = features
        .node_id_by_name(NORMALIZED_FEATURES_NODE)
        .map_err(graph)?;
    features
        .select_output_outlets(&[OutletId::new(node, 0)])
        .map_err(graph)?;
    let plan = features
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(graph)?;
    let spec = &run.config.features.recipe.preprocess;
    let bar = measure::progress_bar(
        detector.bank_size(),
        "computing the rejection's bank again",
        false,
    );
    let rows = detector
        .sources
        .par_iter()
        .map_init(
            || Preprocessor::new(spec),
            |preprocessor, source| -> Result<Vec<f32>, ExportError> {
                let path = paths.get(source.row).ok_or_else(|| {
                    ExportError::Mismatch(format!(
                        "the rejection's bank names training row {}, the features cache has {}",
                        source.row,
                        paths.len()
                    ))
                })?;
                let image_error = |source: Box<dyn std::error::Error + Send + Sync>| {
                    ExportError::Image { path: path.clone(), source }
                };
                let mut image = lookout_shared::image_io::decode_file(path)
                    .map_err(|e| image_error(e.into()))?;
                if source.view > 0 {
                    let (policy, seed) = policy.as_ref().ok_or_else(|| {
                        ExportError::Mismatch(
                            "the rejection's bank holds augmented views, the run records no augmentation".into(),
                        )
                    })?;
                    image = policy
                        .view(&image, &data_set_key(&root, path), source.view, *seed)
                        .map_err(|e| image_error(e.into()))?;
                }
                let preprocessor = preprocessor.as_mut().map_err(|e| {
                    ExportError::Mismatch(format!("the run's preprocessing recipe: {e}"))
                })?;
                let input = preprocessor.run(&image).map_err(|e| image_error(e.into()))?;
                let row = super::run::run_once(&plan, input_shape, &input).map_err(graph)?;
                bar.inc(1);
                Ok(row)
            },
        )
        .collect::<Result<Vec<Vec<f32>>, ExportError>>()?;
    bar.finish_and_clear();
    if rows.iter().any(|r| r.len() != detector.dim) {
        return Err(ExportError::Mismatch(format!(
            "the 4-bit graph's features are not {} long",
            detector.dim
        )));
    }
    Ok(Some(UnknownDetector {
        bank: rows.concat(),
        ..detector.clone()
    }))
}

/// What the rejection's threshold was calibrated on: the validation photos and, when asked, their views.
#[derive(Debug, Clone)]
pub struct CalibrationImages {
    /// The validation photos ([`super::check::validation_paths`]).
    pub photos: Vec<PathBuf>,
    /// Each photo's key in the data set (what its views were drawn with), when the views count.
    views: Option<Views>,
}

#[derive(Debug, Clone)]
struct Views {
    keys: Vec<String>,
    policy: AugmentPolicy,
    count: u32,
    seed: u64,
}

impl CalibrationImages {
    /// The images `run`'s threshold was calibrated on: `photos`, and their views when its rejection was
    /// calibrated on views (`calibrated_on_views`) of a cache whose views the run records.
    pub fn of_run(
        run: &Run,
        run_dir: &Path,
        photos: Vec<PathBuf>,
    ) -> Result<CalibrationImages, ExportError> {
        let views = match (&run.config.unknown, &run.config.features.augment) {
            (Some(unknown), Some(augment)) if unknown.calibrated_on_views > 0 => {
                let policy: AugmentPolicy = augment.policy.parse().map_err(|e| {
                    ExportError::Mismatch(format!("the run's augmentation policy: {e}"))
                })?;
                let root = data_root(run_dir, &run.config)?;
                Some(Views {
                    keys: photos.iter().map(|p| data_set_key(&root, p)).collect(),
                    policy,
                    count: augment.views,
                    seed: augment.seed,
                })
            }
            _ => None,
        };
        Ok(CalibrationImages { photos, views })
    }

    /// Images to score: the photos, times one plus the views of each.
    pub fn len(&self) -> usize {
        self.photos.len() * (1 + self.views.as_ref().map_or(0, |v| v.count as usize))
    }

    /// True without photos.
    pub fn is_empty(&self) -> bool {
        self.photos.is_empty()
    }

    /// The ood scores `model` gives photo `i` and its views.
    fn scores(&self, model: &mut Model, i: usize) -> Result<Vec<f32>, ExportError> {
        let path = &self.photos[i];
        let image_error = |source: Box<dyn std::error::Error + Send + Sync>| ExportError::Image {
            path: path.clone(),
            source,
        };
        let image =
            lookout_shared::image_io::decode_file(path).map_err(|e| image_error(e.into()))?;
        let mut scores = Vec::new();
        scores.extend(model.classify(&image)?.ood_score);
        if let Some(views) = &self.views {
            for view in 1..=views.count {
                let drawn = views
                    .policy
                    .view(&image, &views.keys[i], view, views.seed)
                    .map_err(|e| image_error(e.into()))?;
                scores.extend(model.classify(&drawn)?.ood_score);
            }
        }
        Ok(scores)
    }
}

/// The rejection threshold of `bundle` from its own scores on `images`: the `keep` quantile (`None` without
/// rejection or validation photos). A model per core: there are up to five images per validation photo.
pub fn rejection_threshold(
    bundle: Bundle,
    images: &CalibrationImages,
) -> Result<Option<f32>, ExportError> {
    let Some(keep) = bundle.header.unknown.as_ref().map(|u| u.keep) else {
        return Ok(None);
    };
    if images.is_empty() {
        return Ok(None);
    }
    let bar = measure::progress_bar(images.len(), "calibrating the rejection", false);
    let chunk = images
        .photos
        .len()
        .div_ceil(rayon::current_num_threads())
        .max(1);
    let indices: Vec<usize> = (0..images.photos.len()).collect();
    let per_chunk = indices
        .par_chunks(chunk)
        .map(|chunk| {
            let mut model = Model::from_bundle(bundle.clone(), &RuntimeOptions::default())?;
            let mut scores = Vec::new();
            for &i in chunk {
                let of_photo = images.scores(&mut model, i)?;
                bar.inc(of_photo.len() as u64);
                scores.extend(of_photo);
            }
            Ok(scores)
        })
        .collect::<Result<Vec<Vec<f32>>, ExportError>>()?;
    bar.finish_and_clear();
    let scores: Vec<f32> = per_chunk.into_iter().flatten().collect();
    Ok(Some(crate::head::unknown::quantile_threshold(
        &scores, keep,
    )))
}

/// The data set's root as the features cache recorded it.
fn data_root(run_dir: &Path, config: &RunConfig) -> Result<PathBuf, ExportError> {
    let set = FeatureSet::open(super::check::features_dir(run_dir, config))?;
    Ok(set.manifest.data_root)
}

/// A photo's key in the data set: its path under the root, `/`-separated (as extraction keyed its views); a
/// photo outside the root (a `--background` folder elsewhere) is keyed by its whole path, as its split entry is.
fn data_set_key(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_paths_under_the_root_or_whole() {
        let root = Path::new("/data/pets");
        assert_eq!(
            data_set_key(root, Path::new("/data/pets/Cat/1.jpg")),
            "Cat/1.jpg"
        );
        assert_eq!(
            data_set_key(root, Path::new("/porch/empty/3.jpg")),
            "/porch/empty/3.jpg"
        );
    }
}

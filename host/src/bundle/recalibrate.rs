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

use image::RgbImage;
use lookout_runtime::{Model, RuntimeOptions};
use lookout_shared::bundle::Bundle;
use lookout_shared::preprocess::{PreprocessSpec, Preprocessor};
use rayon::prelude::*;
use tract_core::prelude::*;

use super::{measure, ExportError};
use crate::features::{FeatureSet, Split};
use crate::head::run::{Run, RunConfig};
use crate::head::unknown::UnknownDetector;
use crate::transform::AugmentPolicy;

/// The node of the combined graph that gives the normalised, pooled features the bank is compared with.
const NORMALIZED_FEATURES_NODE: &str = "lookout_unknown.normalize";

/// The run's training images as extraction keyed them, read once per export (listing them reads the training
/// shards): each training row's file and label, and how its augmented views were drawn.
#[derive(Debug, Clone)]
pub struct TrainImages {
    /// Each training row's file, in the cache's row order.
    paths: Vec<PathBuf>,
    /// Each training row's class.
    labels: Vec<u32>,
    /// The data set's root as the cache recorded it: a file's key (what its views were drawn with) is its
    /// path under it.
    root: PathBuf,
    /// How the views were drawn, when the cache has views.
    views: Option<Views>,
}

#[derive(Debug, Clone)]
struct Views {
    policy: AugmentPolicy,
    count: u32,
    seed: u64,
}

impl TrainImages {
    /// The training images of the run in `run_dir`.
    pub fn of_run(run: &Run, run_dir: &Path) -> Result<TrainImages, ExportError> {
        let set = FeatureSet::open(super::check::features_dir(run_dir, &run.config))?;
        let (paths, labels) = set.split_index(Split::Train)?;
        let views = match &run.config.features.augment {
            Some(augment) => Some(Views {
                policy: augment.policy.parse().map_err(|e| {
                    ExportError::Mismatch(format!("the run's augmentation policy: {e}"))
                })?,
                count: augment.views,
                seed: augment.seed,
            }),
            None => None,
        };
        Ok(TrainImages {
            paths,
            labels,
            root: set.manifest.data_root,
            views,
        })
    }

    /// The photos the run's head was validated on and its rejection threshold calibrated on: training photos
    /// that neither the head's weights nor the rejection's bank saw, and never a test photo, which the accuracy
    /// gate measures on. Empty when the run had no validation split.
    pub fn validation_paths(&self, config: &RunConfig) -> Vec<PathBuf> {
        let training = &config.training;
        let (_, valid) =
            crate::head::train::validation_split(&self.labels, training.val_split, training.seed);
        valid.into_iter().map(|i| self.paths[i].clone()).collect()
    }

    /// The photo at `path` decoded as extraction decoded it to draw its views (`AugmentPolicy::decode_photo`).
    fn decode_for_views(
        &self,
        path: &Path,
        spec: &PreprocessSpec,
    ) -> Result<RgbImage, ExportError> {
        self.views()?
            .policy
            .decode_photo(path, spec)
            .map_err(|e| image_error(path, e.into()))
    }

    fn views(&self) -> Result<&Views, ExportError> {
        self.views.as_ref().ok_or_else(|| {
            ExportError::Mismatch(
                "the rejection was fitted on augmented views, the run records no augmentation"
                    .into(),
            )
        })
    }

    /// `image` (the file at `path`, [`TrainImages::decode_for_views`]) as its view `view` was drawn (0: the
    /// photo itself).
    fn view(&self, image: &RgbImage, path: &Path, view: u32) -> Result<RgbImage, ExportError> {
        if view == 0 {
            return Ok(image.clone());
        }
        let views = self.views()?;
        views
            .policy
            .view(image, &data_set_key(&self.root, path), view, views.seed)
            .map_err(|e| image_error(path, e.into()))
    }
}

fn image_error(path: &Path, source: Box<dyn std::error::Error + Send + Sync>) -> ExportError {
    ExportError::Image {
        path: path.to_path_buf(),
        source,
    }
}

/// `detector` with its bank computed again by `quantized` (a 4-bit combined graph of the run, f32
/// arithmetic): each bank row's image through its backbone. `None` when the run does not record where its
/// bank rows came from (runs from before it did): the float bank is kept then.
pub fn quantized_bank(
    quantized: &TypedModel,
    input_shape: &[usize],
    run: &Run,
    train: &TrainImages,
    detector: &UnknownDetector,
) -> Result<Option<UnknownDetector>, ExportError> {
    if detector.sources.len() != detector.bank_size() || detector.sources.is_empty() {
        return Ok(None);
    }
    let graph = ExportError::Graph;
    let mut features = quantized.clone();
    let node = features
        .node_id_by_name(NORMALIZED_FEATURES_NODE)
        .map_err(graph)?;
    features
        .select_output_outlets(&[OutletId::new(node, 0)])
        .map_err(graph)?;
    let plan = lookout_runtime::plan::optimize(features)
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
                let path = train.paths.get(source.row).ok_or_else(|| {
                    ExportError::Mismatch(format!(
                        "the rejection's bank names training row {}, the features cache has {}",
                        source.row,
                        train.paths.len()
                    ))
                })?;
                // The photo as extraction decoded it; a view drawn from the whole photo, as extraction drew it.
                let image = match source.view {
                    0 => lookout_shared::image_io::decode_file_for(path, spec, &[])
                        .map_err(|e| image_error(path, e.into()))?,
                    view => train.view(&train.decode_for_views(path, spec)?, path, view)?,
                };
                let preprocessor = preprocessor.as_mut().map_err(|e| {
                    ExportError::Mismatch(format!("the run's preprocessing recipe: {e}"))
                })?;
                let input = preprocessor
                    .run(&image)
                    .map_err(|e| image_error(path, e.into()))?;
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
pub struct CalibrationImages<'a> {
    /// The validation photos ([`TrainImages::validation_paths`]).
    pub photos: Vec<PathBuf>,
    /// The training images, for drawing the photos' views again.
    train: &'a TrainImages,
    /// Views a photo (0: the photo alone): the cache's, when the rejection was calibrated on them.
    views: u32,
}

impl<'a> CalibrationImages<'a> {
    /// The images `run`'s threshold was calibrated on: `photos`, and their views when its rejection was
    /// calibrated on views (`calibrated_on_views`) of a cache whose views the run records.
    pub fn of_run(
        run: &Run,
        train: &'a TrainImages,
        photos: Vec<PathBuf>,
    ) -> CalibrationImages<'a> {
        let views = match &train.views {
            Some(views) if run.config.rejection_fitted_on_views() => views.count,
            _ => 0,
        };
        CalibrationImages {
            photos,
            train,
            views,
        }
    }

    /// Images to score: the photos, times one plus the views of each.
    pub fn len(&self) -> usize {
        self.photos.len() * (1 + self.views as usize)
    }

    /// True without photos.
    pub fn is_empty(&self) -> bool {
        self.photos.is_empty()
    }

    /// The ood scores `model` gives photo `i` and its views.
    fn scores(&self, model: &mut Model, i: usize) -> Result<Vec<f32>, ExportError> {
        let path = &self.photos[i];
        // The photo as extraction decoded it; its views drawn from the whole photo, as extraction drew them.
        let photo = model
            .decode_file(path, &[])
            .map_err(|e| image_error(path, e.into()))?;
        let mut scores: Vec<f32> = model.classify(&photo)?.ood_score.into_iter().collect();
        if self.views > 0 {
            let whole = self.train.decode_for_views(path, model.preprocess_spec())?;
            for view in 1..=self.views {
                let drawn = self.train.view(&whole, path, view)?;
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
    images: &CalibrationImages<'_>,
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

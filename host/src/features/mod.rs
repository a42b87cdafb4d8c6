//! Stage 2, features: the backbone (catalogue name or model file: `lookout_models::backbone`), where it runs ([`device`]),
//! running it over images ([`extractor`]), a whole folder into the features cache ([`extract`]), and the cache
//! itself ([`cache`], [`shard`]) with the rows it loads into ([`rows`]), and augmented views of the training
//! images cached beside them ([`views`]).

pub mod cache;
pub mod device;
pub mod error;
pub mod extract;
pub mod extractor;
pub mod pooling;
pub mod rows;
pub mod shard;
pub mod views;

use std::path::PathBuf;

use lookout_shared::bundle::BackboneInfo;
use serde::{Deserialize, Serialize};

pub use cache::{FeatureSet, Manifest, Split, SplitFeatures};
pub use error::{FeaturesError, ShardError};
pub use pooling::{deserialize_pooling, Pooling};
pub use rows::{FeatureRows, RowsError};

/// The backbone features were extracted with, as the cache and run.json record it: its identity (the one
/// the bundle carries: name, sha256 of the graph that runs, cut) and where its file was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneRecord {
    /// Name, sha256 and cut.
    #[serde(flatten)]
    pub identity: BackboneInfo,
    /// The model file that was run.
    pub path: PathBuf,
}

/// How an image becomes a feature row: the backbone, the preprocessing before it, the shape of what it gives and
/// the pooling applied at extraction. The features cache (`manifest.json`, key `recipe`) and every run trained on
/// it (`run.json`, `features.recipe`) record it as one object, so the two cannot drift apart field by field.
///
/// Files written before it (features format 1, run format 1) have its four fields at the top level of the object;
/// [`FeatureRecipe::nest_flat_fields`] moves them, so they still read. (Not `#[serde(flatten)]`, which would have
/// kept the old layout: serde buffers a flattened object, and with serde_json's `arbitrary_precision`, which one
/// dependency of the test suite turns on, numbers do not survive the buffer.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRecipe {
    /// The backbone that produced the features.
    pub backbone: BackboneRecord,
    /// The preprocessing applied to every image before the backbone.
    pub preprocess: lookout_shared::PreprocessSpec,
    /// Shape of one image's features, e.g. `[1280, 7, 7]`, or `[1280]` when pooled at extraction.
    pub feature_shape: Vec<usize>,
    /// Pooling applied to the backbone's output at extraction. Files written before 0.3 recorded
    /// `pooled: bool`; both read.
    #[serde(
        rename = "pooling",
        alias = "pooled",
        deserialize_with = "deserialize_pooling"
    )]
    pub pooling: Pooling,
}

impl FeatureRecipe {
    /// The recipe's keys as files before format 2 held them, at the top level (`pooled`: `pooling` before 0.3).
    const FLAT_KEYS: [&'static str; 5] = [
        "backbone",
        "preprocess",
        "feature_shape",
        "pooling",
        "pooled",
    ];

    /// Moves the recipe's fields of a file written before `FeatureRecipe` (at the top level of `object`) into one
    /// `recipe` object, as today's files hold them. Nothing to do on a file that has `recipe`.
    pub fn nest_flat_fields(object: &mut serde_json::Value) {
        let Some(map) = object.as_object_mut() else {
            return;
        };
        if map.contains_key("recipe") {
            return;
        }
        let recipe: serde_json::Map<String, serde_json::Value> = Self::FLAT_KEYS
            .iter()
            .filter_map(|key| map.remove(*key).map(|value| (key.to_string(), value)))
            .collect();
        if !recipe.is_empty() {
            map.insert("recipe".to_string(), recipe.into());
        }
    }

    /// Why features made by `self` cannot stand in for those of `other` (a different backbone graph, shape or
    /// preprocessing), or `None` when they can. The backbone is compared by its graph's sha256, not its path.
    pub fn mismatch(&self, other: &FeatureRecipe) -> Option<String> {
        if self.feature_shape != other.feature_shape {
            return Some(format!(
                "feature shape {:?}, not {:?}",
                self.feature_shape, other.feature_shape
            ));
        }
        let (mine, theirs) = (&self.backbone.identity, &other.backbone.identity);
        if mine.sha256 != theirs.sha256 {
            return Some(format!(
                "backbone {} ({}), not {} ({})",
                mine.name, mine.sha256, theirs.name, theirs.sha256
            ));
        }
        if self.preprocess != other.preprocess {
            return Some("another preprocessing".to_string());
        }
        None
    }
}

impl BackboneRecord {
    /// The record of `backbone` with the features taken at `cut`.
    pub fn of(backbone: &lookout_models::backbone::Backbone, cut: Option<String>) -> Self {
        BackboneRecord {
            identity: BackboneInfo {
                name: backbone.name.clone(),
                sha256: backbone.sha256.clone(),
                cut,
            },
            path: backbone.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that holds the recipe beside fields of its own, as `manifest.json` and `run.json` do.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Recorded {
        dir: PathBuf,
        recipe: FeatureRecipe,
    }

    fn recipe() -> FeatureRecipe {
        FeatureRecipe {
            backbone: BackboneRecord {
                identity: BackboneInfo {
                    name: "efficientnet_lite0".into(),
                    sha256: "ab".into(),
                    cut: None,
                },
                path: "lite0.onnx".into(),
            },
            preprocess: lookout_shared::PreprocessSpec::tf_inception(),
            feature_shape: vec![1280, 7, 7],
            pooling: Pooling::None,
        }
    }

    #[test]
    fn files_written_before_the_recipe_was_one_object_still_read() {
        let recorded = Recorded {
            dir: "features".into(),
            recipe: recipe(),
        };
        let json = serde_json::to_value(&recorded).expect("serialise");
        assert!(json.get("recipe").is_some(), "{json}");

        // The layout of features format 1 / run format 1: the four fields at the top level, and before 0.3
        // `pooled: true` for `pooling`.
        let mut old = json.clone();
        let object = old.as_object_mut().expect("an object");
        let nested = object.remove("recipe").expect("recipe");
        for (key, value) in nested.as_object().expect("an object") {
            object.insert(key.clone(), value.clone());
        }
        let mut older = old.clone();
        FeatureRecipe::nest_flat_fields(&mut old);
        assert_eq!(old, json);
        let back: Recorded = serde_json::from_value(old).expect("read back");
        assert_eq!(back, recorded);

        let object = older.as_object_mut().expect("an object");
        object.remove("pooling");
        object.insert("pooled".into(), serde_json::Value::Bool(true));
        FeatureRecipe::nest_flat_fields(&mut older);
        let read: Recorded = serde_json::from_value(older).expect("an old file reads");
        assert_eq!(read.recipe.pooling, Pooling::Avg);

        // Today's files are left as they are.
        let mut today = json.clone();
        FeatureRecipe::nest_flat_fields(&mut today);
        assert_eq!(today, json);
    }

    #[test]
    fn a_recipe_differs_by_shape_backbone_graph_or_preprocessing_not_by_path() {
        let base = recipe();
        let mut moved = recipe();
        moved.backbone.path = "elsewhere/lite0.onnx".into();
        assert_eq!(base.mismatch(&moved), None);

        let mut pooled = recipe();
        pooled.feature_shape = vec![1280];
        assert!(base.mismatch(&pooled).expect("differs").contains("[1280]"));

        let mut other = recipe();
        other.backbone.identity.sha256 = "cd".into();
        assert!(base.mismatch(&other).expect("differs").contains("cd"));

        let mut torchvision = recipe();
        torchvision.preprocess = lookout_shared::PreprocessSpec::torchvision();
        assert!(base
            .mismatch(&torchvision)
            .expect("differs")
            .contains("preprocessing"));
    }
}

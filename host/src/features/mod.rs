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
/// the pooling applied at extraction. The features cache (`manifest.json`) and every run trained on it (`run.json`)
/// record it, flattened into their own fields (the JSON keys are those of the earlier separate fields), so the
/// two cannot drift apart field by field.
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

    /// A file that flattens the recipe beside fields of its own, as `manifest.json` and `run.json` do.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Recorded {
        dir: PathBuf,
        #[serde(flatten)]
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
    fn the_recipe_keeps_the_keys_of_the_fields_it_replaced_and_reads_old_files() {
        let recorded = Recorded {
            dir: "features".into(),
            recipe: recipe(),
        };
        let json = serde_json::to_value(&recorded).expect("serialise");
        for key in ["dir", "backbone", "preprocess", "feature_shape", "pooling"] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        let back: Recorded = serde_json::from_value(json.clone()).expect("read back");
        assert_eq!(back, recorded);

        // Written before 0.3: `pooled: true` instead of `pooling`.
        let mut old = json;
        let object = old.as_object_mut().expect("an object");
        object.remove("pooling");
        object.insert("pooled".into(), serde_json::Value::Bool(true));
        let read: Recorded = serde_json::from_value(old).expect("an old file reads");
        assert_eq!(read.recipe.pooling, Pooling::Avg);
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

//! Stage 2, features: the backbone (catalogue name or model file: `lookout_models::backbone`), where it runs ([`device`]),
//! running it over images ([`extractor`]), a whole folder into the features cache ([`extract`]), and the cache
//! itself ([`cache`], [`shard`]) with the rows it loads into ([`rows`]), and augmented views of the training
//! images cached beside them ([`views`]).

pub mod cache;
pub mod device;
pub mod extract;
pub mod extractor;
pub mod pooling;
pub mod rows;
pub mod shard;
pub mod views;

use std::path::PathBuf;

use lookout_shared::bundle::BackboneInfo;
use serde::{Deserialize, Serialize};

pub use cache::{FeatureSet, FeaturesError, Manifest, Split, SplitFeatures};
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

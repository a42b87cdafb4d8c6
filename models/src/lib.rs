//! Backbone catalogue and converters: pull pretrained ImageNet backbones, verify them, convert their PyTorch
//! state dicts into tract graphs with a Rust definition of the architecture, and cache them ready for tract.
//!
//! Entry point for other crates: [`resolve`] turns a catalogue name into a cached `.nnef.tar` (pulling it on
//! first use).

pub mod cache;
pub mod catalogue;
pub mod convert;
pub mod download;
pub mod efficientnet_lite;
pub mod error;
pub mod graph;
pub mod mobilenet_v3;
pub mod model_file;
pub mod pull;
pub mod pypi;
pub mod state_dict;

use std::path::PathBuf;

pub use cache::Cache;
pub use catalogue::{catalogue, Architecture, Catalogue};
pub use error::ModelsError;
pub use model_file::{load_model_file, ModelFileError, ModelFormat};
pub use pull::{import, pull, ImportRequest, PullOptions};

/// A backbone ready for tract.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedBackbone {
    /// The name it was resolved by, with the weights (`mobilenet_v3_large@IMAGENET1K_V2`).
    pub name: String,
    /// The graph: a `.nnef.tar` (load with `tract_nnef::nnef().with_tract_core().model_for_path`) or an `.onnx`.
    pub path: PathBuf,
    /// sha256 of the source weights file.
    pub sha256: String,
    /// How to preprocess images for it.
    pub preprocess: lookout_shared::PreprocessSpec,
    /// Name of the feature output node (`features`); the graph's only output.
    pub feature_node: Option<String>,
}

/// Resolves `name` in the default cache, pulling and converting it on first use (progress on stderr).
///
/// `name` is a catalogue name (`mobilenet_v3_large`), optionally with weights (`mobilenet_v3_large:V1` or
/// `mobilenet_v3_large@IMAGENET1K_V1`), or the name given to `lookout backbone import`.
pub fn resolve(name: &str) -> Result<ResolvedBackbone, ModelsError> {
    resolve_in(&Cache::from_env()?, name, &PullOptions::default())
}

/// [`resolve`] in a given cache with given pull options.
pub fn resolve_in(
    cache: &Cache,
    name: &str,
    options: &PullOptions,
) -> Result<ResolvedBackbone, ModelsError> {
    let (base, weights) = match name.split_once([':', '@']) {
        Some((base, weights)) => (base, Some(weights)),
        None => (name, None),
    };
    let cat = catalogue();
    let (key, meta) = match cat.get(base) {
        Some(entry) => {
            let w = entry.weights(weights)?;
            let key = Cache::catalogue_key(&entry.name, &w.id);
            let meta = match cache.read_entry(&key)? {
                Some(meta) => meta,
                None => pull(cache, entry, w, options)?,
            };
            (key, meta)
        }
        None => match cache.read_entry(name)? {
            Some(meta) => (name.to_string(), meta),
            None => {
                let mut known: Vec<String> = cat.names().iter().map(|s| s.to_string()).collect();
                known.extend(
                    cache
                        .entries()?
                        .into_iter()
                        .filter(|(_, m)| m.weights == pull::IMPORTED)
                        .map(|(k, _)| k),
                );
                return Err(ModelsError::UnknownBackbone {
                    name: name.to_string(),
                    known: known.join(", "),
                });
            }
        },
    };
    Ok(ResolvedBackbone {
        name: key.clone(),
        path: cache.entry_dir(&key).join(cache::GRAPH_FILE),
        sha256: meta.sha256,
        preprocess: meta.preprocess.spec(),
        feature_node: Some(meta.feature_output),
    })
}

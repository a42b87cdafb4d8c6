//! Backbone catalogue and converters: pull pretrained ImageNet backbones, verify them, convert their PyTorch
//! state dicts into tract graphs with a Rust definition of the architecture, and cache them ready for tract.
//!
//! Entry point for other crates: [`resolve`] turns a catalogue name into a cached `.nnef.tar` (pulling it on
//! first use).

pub mod backbone;
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

pub use backbone::{Backbone, BackboneError};
pub use cache::Cache;
pub use catalogue::{catalogue, Architecture, Catalogue};
pub use error::ModelsError;
pub use model_file::{load_model_file, ModelFileError, ModelFormat};
pub use pull::{import, pull, ImportRequest, PullOptions};

/// Resolves `name` in the default cache, pulling and converting it on first use (progress on stderr).
///
/// `name` is a catalogue name (`mobilenet_v3_large`), optionally with weights (`mobilenet_v3_large:V1` or
/// `mobilenet_v3_large@IMAGENET1K_V1`), or the name given to `lookout backbone import`.
pub fn resolve(name: &str) -> Result<Backbone, ModelsError> {
    resolve_in(&Cache::from_env()?, name, &PullOptions::default())
}

/// [`resolve`] in a given cache with given pull options.
pub fn resolve_in(
    cache: &Cache,
    name: &str,
    options: &PullOptions,
) -> Result<Backbone, ModelsError> {
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
    let path = cache.entry_dir(&key).join(cache::GRAPH_FILE);
    // The identity a run records is the graph that runs, as for a file: the weights behind it were verified
    // against the catalogue when they were pulled, and a converter change makes a new graph.
    Ok(Backbone {
        name: key,
        sha256: download::sha256_file(&path)?,
        format: ModelFormat::Nnef,
        preprocess: meta.preprocess.spec(),
        feature_node: Some(meta.feature_output),
        path,
    })
}

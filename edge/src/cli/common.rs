//! Pieces shared by the subcommands.

use std::path::Path;

use anyhow::Context as _;
pub use lookout_edge::stats::{ms, round3};
use lookout_edge::{Model, RuntimeOptions, UnknownPolicy};

/// Loads a bundle, with the path in the error.
pub fn load_model(path: &Path, threads: usize, unknown: &UnknownArgs) -> anyhow::Result<Model> {
    let options = RuntimeOptions {
        threads,
        unknown: unknown.policy(),
    };
    Model::load(path, &options).with_context(|| format!("loading model {}", path.display()))
}

/// How images that are none of the labels are treated (bundles exported with rejection).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UnknownArgs {
    /// Call an image unknown above this out-of-distribution score instead of the bundle's calibrated
    /// threshold (`lookout-edge info` shows it; higher lets more through).
    #[arg(long, value_name = "SCORE", conflicts_with = "no_unknown")]
    pub unknown_threshold: Option<f32>,
    /// Never call an image unknown: every image gets one of the labels (the score is still reported).
    #[arg(long)]
    pub no_unknown: bool,
}

impl UnknownArgs {
    /// The runtime's policy for these flags.
    pub fn policy(&self) -> UnknownPolicy {
        match (self.no_unknown, self.unknown_threshold) {
            (true, _) => UnknownPolicy::Off,
            (false, Some(threshold)) => UnknownPolicy::Threshold(threshold),
            (false, None) => UnknownPolicy::AsExported,
        }
    }
}

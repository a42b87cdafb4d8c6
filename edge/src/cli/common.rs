//! Pieces shared by the subcommands.

use std::path::Path;

use anyhow::Context as _;
pub use lookout_edge::stats::{ms, round3};
use lookout_edge::{Model, RuntimeOptions, UnknownPolicy, WeightMemory};

/// Loads a bundle, with the path in the error.
pub fn load_model(
    path: &Path,
    threads: usize,
    weights: WeightsArg,
    unknown: &UnknownArgs,
) -> anyhow::Result<Model> {
    Model::load(path, &runtime_options(threads, weights, unknown))
        .with_context(|| format!("loading model {}", path.display()))
}

/// How `--threads`, `--weights` and the rejection flags load a bundle.
pub fn runtime_options(
    threads: usize,
    weights: WeightsArg,
    unknown: &UnknownArgs,
) -> RuntimeOptions {
    RuntimeOptions {
        threads,
        unknown: unknown.policy(),
        weights: weights.into(),
    }
}

/// `--roi x,y,w,h`, with the flag in its one-line error.
pub fn parse_roi(text: &str) -> anyhow::Result<lookout_shared::Region> {
    text.parse()
        .map_err(|e: lookout_shared::RegionError| anyhow::anyhow!("--roi {text}: {e}"))
}

/// `--weights`: how a q4 bundle's block-quantized weights are held once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WeightsArg {
    /// Convolution weights expanded to f32 at load, the head's and the rejection's kept in 4 bits: f32
    /// speed or better, more memory. Bundles without 4-bit weights are the same either way.
    #[default]
    Fast,
    /// As the bundle stores them (4.5 bits a weight): the least memory (for a Pi Zero 2 W). tract's 4-bit
    /// kernels multiply one column at a time, so convolutions run slower than in f32 (1.4x on x86, Lite0).
    Compact,
}

impl From<WeightsArg> for WeightMemory {
    fn from(arg: WeightsArg) -> WeightMemory {
        match arg {
            WeightsArg::Compact => WeightMemory::AsStored,
            WeightsArg::Fast => WeightMemory::Expanded,
        }
    }
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

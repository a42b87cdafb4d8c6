//! `lookout inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lookout_host::inspect::inspect_file;

/// Arguments of `lookout inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  lookout inspect efficientnet_lite0_features.onnx --depth 2")]
pub struct Args {
    /// The model file (.onnx, .nnef.tar, .nnef.tgz).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Input shape, e.g. 1,3,224,224 (default: the model's own, with a symbolic batch set to 1).
    #[arg(long, value_name = "DIMS", value_delimiter = ',')]
    pub input: Option<Vec<usize>>,
    /// Group rows by the first N components of the node names (`/features/features.3/...`).
    #[arg(long, value_name = "N")]
    pub depth: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `lookout inspect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let summary = inspect_file(&args.model, args.input.as_deref(), args.depth)
        .with_context(|| format!("inspecting {}", args.model.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_table());
    }
    Ok(ExitCode::SUCCESS)
}

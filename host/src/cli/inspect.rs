//! `lookout inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lookout_host::report::inspect::inspect_file;
use lookout_models::backbone::Backbone;

/// Arguments of `lookout inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  lookout inspect efficientnet_lite0_features.onnx --depth 2\n  lookout inspect mobilenet_v3_large      # a catalogue or imported backbone, pulled on first use"
)]
pub struct Args {
    /// A model file (.onnx, .nnef.tar, .nnef.tgz), or the name of a catalogue or imported backbone.
    #[arg(value_name = "MODEL|NAME")]
    pub model: String,
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
    let path = PathBuf::from(&args.model);
    let path = if path.is_file() {
        path
    } else {
        // The catalogue's converted graph: the very file extraction runs.
        Backbone::resolve(&args.model, None)
            .with_context(|| format!("finding backbone {}", args.model))?
            .path
    };
    let summary = inspect_file(&path, args.input.as_deref(), args.depth)
        .with_context(|| format!("inspecting {}", args.model))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_table());
    }
    Ok(ExitCode::SUCCESS)
}

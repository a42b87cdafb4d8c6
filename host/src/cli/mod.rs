//! Command-line interface: one module per subcommand, each with its clap `Args` and a `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backbone;
mod choices;
mod evaluate;
mod export;
mod extract;
mod fit;
mod inspect;
mod predict;
mod publish;
mod train;

/// Transfer learning from a workstation to a camera on a Raspberry Pi.
///
/// The workflow: `extract` backbone features from a folder of labelled photos once, `train` a small head on
/// them, `evaluate` it, `export` one quantized bundle, and run it on the Pi with `lookout-edge`.
/// `fit` does all of it in one go.
#[derive(Debug, Parser)]
#[command(name = "lookout", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole job: extract → train → evaluate → export, keeping every intermediate.
    Fit(fit::Args),
    /// Summarise an ONNX backbone layer by layer: shapes, parameters, multiply-adds.
    Inspect(inspect::Args),
    /// Run a backbone over an image folder once and cache the features.
    Extract(extract::Args),
    /// Train a classifier head on cached features.
    Train(train::Args),
    /// Evaluate a trained run or an exported bundle on the test split.
    Evaluate(evaluate::Args),
    /// Label images with a trained run or an exported bundle.
    Predict(predict::Args),
    /// Export one combined, quantized model bundle for the edge.
    Export(export::Args),
    /// Manage pretrained backbones: list, pull, import.
    #[command(subcommand)]
    Backbone(backbone::Command),
    /// Send a bundle to the cameras of a fleet over MQTT; they check, self-test and switch without a restart.
    Publish(publish::PublishArgs),
    /// List what every camera of a fleet runs (their retained MQTT reports).
    Fleet(publish::FleetArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fit(args) => fit::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Train(args) => train::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Export(args) => export::run(args),
        Command::Backbone(cmd) => backbone::run(cmd),
        Command::Publish(args) => publish::run_publish(args),
        Command::Fleet(args) => publish::run_fleet(args),
    }
}

//! Command-line interface: one module per subcommand.

mod bench;
mod classify;
mod common;
mod info;
mod pins;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad usage, a missing or broken model, or an unusable source.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when some inputs failed (bad images) but the run went through.
pub const EXIT_SOME_FAILED: u8 = 1;

/// Runs Lookout model bundles (.lookout) with tract on the CPU: classify files, watch a camera, act on what it sees.
#[derive(Debug, Parser)]
#[command(name = "lookout-edge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a bundle holds: labels, backbone, head, precision, metrics, sizes.
    Info(info::Args),
    /// Classify image files and folders (recursively; files are recognised by content).
    Classify(classify::Args),
    /// Classify a live stream (camera, MJPEG pipe, folder), smooth the scores, fire events and actions.
    // Boxed: its many flags would make every other variant as large.
    Watch(Box<watch::Args>),
    /// Measure load time, latency percentiles, frames/s and peak memory of a bundle on this machine.
    Bench(bench::Args),
}

/// Parses the command line, runs the subcommand, and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Watch(args) => watch::run(*args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", lookout_edge::error_line(e.as_ref()));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

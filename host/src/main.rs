//! `lookout`: transfer learning from a workstation to a camera on a Raspberry Pi.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", lookout_runtime::error_line(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

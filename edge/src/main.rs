//! `lookout-edge`: run a Lookout model bundle on images, a camera or a stream, on the CPU.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}

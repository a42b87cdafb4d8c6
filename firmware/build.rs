//! Puts the board's memory map where cortex-m-rt's `link.x` finds it as `memory.x` (only the board binaries
//! link with it): the Nucleo-F411RE's with the `nucleo-f411` feature, the MPS2 AN386's otherwise.
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let board = if std::env::var_os("CARGO_FEATURE_NUCLEO_F411").is_some() {
        "memory/nucleo-f411.x"
    } else {
        "memory/mps2-an386.x"
    };
    std::fs::copy(board, out.join("memory.x")).expect("copying the board's memory map");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory");
}

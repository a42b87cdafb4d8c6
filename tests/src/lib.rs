//! Helpers for the end-to-end tests: find the real `lookout` and `lookout-edge` binaries and run them.
//!
//! `cargo test --workspace` builds both binaries before any test runs (their packages have integration tests), into
//! the same target directory as this test executable; a test run on its own (`cargo test -p lookout-e2e`) builds
//! them first, with the same profile.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub use lookout_testdata::{require_shared, shared_dir};

/// The directory holding the binaries of the profile this test was built with (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// Builds the workspace binaries once per test process when they are missing.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        if dir.join("lookout").is_file() && dir.join("lookout-edge").is_file() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "lookout-host",
            "-p",
            "lookout-edge",
            "--bins",
        ]);
        if profile != "debug" {
            cmd.args(["--profile", profile]);
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "building lookout and lookout-edge failed");
    });
}

/// Path of a workspace binary (`lookout` or `lookout-edge`), built if needed.
pub fn bin(name: &str) -> PathBuf {
    ensure_built();
    let path = profile_dir().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A `Command` for a workspace binary.
pub fn command(name: &str) -> Command {
    Command::new(bin(name))
}

/// Runs a command and returns its output, printing stdout/stderr on failure for the test log.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawning the binary");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Parses JSON lines (one object per line), ignoring blank lines.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

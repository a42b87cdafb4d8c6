//! Finds the shared test data (real photos, real ONNX backbones, torchvision fixtures) for Lookout's tests.
//!
//! The data lives outside the repository, in a `shared/` folder beside the checkout (`../shared` from the
//! workspace root) or wherever `LOOKOUT_TEST_DATA` points. Tests that need it call [`shared_dir`] through the
//! [`require_shared!`] macro. Where the data is absent, a contributor's laptop skips the test with a loud
//! message; under CI (`CI=true`, what CI systems set) the test fails instead, so a CI machine without the data
//! can never go green on tests that did not run.

use std::path::{Path, PathBuf};

/// The environment variable that overrides where the shared test data is.
pub const ENV_VAR: &str = "LOOKOUT_TEST_DATA";

/// The shared test-data folder, if there is one: `$LOOKOUT_TEST_DATA`, else `../shared` beside the workspace.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_VAR) {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    // The checkout the test runs from: cargo sets CARGO_MANIFEST_DIR for each test it runs (the test's crate, one
    // level below the workspace), and this crate's own, compiled in, is the fallback for a test binary run by
    // hand. Run time comes first because one target directory can serve two checkouts: cargo then reuses this
    // crate's build from the other one, compiled-in path and all, and the tests would look beside it.
    let manifest_dirs = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    manifest_dirs
        .into_iter()
        .flatten()
        .filter_map(|crate_dir| Some(crate_dir.parent()?.parent()?.join("shared")))
        .find(|dir| dir.join("data").is_dir())
}

/// The folder of the crate whose test is running, in the checkout it runs from: cargo's `CARGO_MANIFEST_DIR`
/// at run time, or `compiled_in` (pass `env!("CARGO_MANIFEST_DIR")`) for a test binary run by hand. Run time first
/// for the reason [`shared_dir`] gives: one target directory serving two checkouts reuses a test binary built in
/// the other one, its compiled-in path included.
pub fn crate_dir(compiled_in: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from(compiled_in))
}

/// Whether the tests run under CI: `CI` is set to anything but empty, `0` or `false` (CI systems set
/// `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// A test cannot run because something it needs is missing: under CI this fails the test (panics) with
/// `what`, elsewhere it prints a loud SKIPPED banner and the test returns.
pub fn missing(test: &str, what: &str) {
    let banner = format!(
        "\n\
         ************************************************************************\n\
         {verb} {test}: {what}\n\
         ************************************************************************\n",
        verb = if in_ci() {
            "FAILED (CI=true)"
        } else {
            "SKIPPED"
        },
    );
    if in_ci() {
        panic!("{banner}");
    }
    eprintln!("{banner}");
}

/// Reports a test that needs the shared data, which was not found (see [`missing`]).
pub fn skip_message(test: &str) {
    missing(
        test,
        &format!(
            "the shared test data was not found. Put it in ../shared beside the checkout or set \
             {ENV_VAR}=/path/to/shared."
        ),
    );
}

/// The shared test-data folder; without it, fails the calling test under CI and returns from it after a loud
/// skip message elsewhere.
///
/// ```ignore
/// let shared = lookout_testdata::require_shared!();
/// let cats = shared.join("data/cats-vs-dogs/Cat");
/// ```
#[macro_export]
macro_rules! require_shared {
    () => {
        match $crate::shared_dir() {
            Some(dir) => dir,
            None => {
                $crate::skip_message(module_path!());
                return;
            }
        }
    };
}

/// Reads a raw little-endian f32 file (the fixtures' format).
pub fn read_f32_file(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(
        bytes.len() % 4,
        0,
        "{} is not a whole number of f32",
        path.display()
    );
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Max and mean absolute difference of two equally long slices.
pub fn abs_diff_stats(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut max = 0f32;
    let mut sum = 0f64;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        max = max.max(d);
        sum += d as f64;
    }
    (max, (sum / a.len().max(1) as f64) as f32)
}

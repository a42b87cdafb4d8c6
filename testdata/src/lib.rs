//! Finds the shared test data (real photos, real ONNX backbones, torchvision fixtures) for Lookout's tests.
//!
//! The data lives outside the repository, in a `shared/` folder beside the checkout (`../shared` from the
//! workspace root) or wherever `LOOKOUT_TEST_DATA` points. Tests that need it call [`shared_dir`] through the
//! [`require_shared!`] macro, which skips the test with a loud message where the data is absent: CI has it,
//! a contributor's laptop may not.

use std::path::{Path, PathBuf};

/// The environment variable that overrides where the shared test data is.
pub const ENV_VAR: &str = "LOOKOUT_TEST_DATA";

/// The shared test-data folder, if there is one: `$LOOKOUT_TEST_DATA`, else `../shared` beside the workspace.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_VAR) {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    // CARGO_MANIFEST_DIR of this crate is <workspace>/testdata.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let dir = workspace.parent()?.join("shared");
    dir.join("data").is_dir().then_some(dir)
}

/// Prints the loud skip message for a test that needs the shared data.
pub fn skip_message(test: &str) {
    eprintln!(
        "\n\
         ************************************************************************\n\
         SKIPPED {test}: the shared test data was not found.\n\
         Put it in ../shared beside the checkout or set {ENV_VAR}=/path/to/shared.\n\
         ************************************************************************\n"
    );
}

/// The shared test-data folder, or returns from the calling test after printing a loud skip message.
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

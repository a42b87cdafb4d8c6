//! Atomic file writes, for every file Lookout produces (bundles, feature shards, manifests, runs, caches).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file that could not be written: which one, and the I/O error as its `source`. Every error type of a crate
/// that writes files takes this with `#[from]`, so no caller converts by hand.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    /// The file that was being written.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one, never a part:
/// a temporary sibling in the same directory (same file system), synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_io(path, bytes).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

fn write_atomic_io(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let (temp_path, mut temp_file) = create_temp_sibling(dir, file_name)?;
    let written = temp_file
        .write_all(bytes)
        .and_then(|()| temp_file.sync_all());
    drop(temp_file);
    let renamed = written.and_then(|()| fs::rename(&temp_path, path));
    if renamed.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(&temp_path);
        return renamed;
    }
    // Make the rename itself durable. Some file systems refuse to sync a directory; the data is already synced
    // and renamed, so that is not worth failing the write over.
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Creates a new, uniquely named hidden file beside the target (`.<name>.<pid>.<n>.tmp`).
fn create_temp_sibling(dir: &Path, file_name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last_error = None;
    for attempt in 0..100u32 {
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{pid}.{attempt}.tmp"));
        let candidate = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("lookout-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the target remains");
        assert!(write_atomic(&dir.join("missing-dir").join("x"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

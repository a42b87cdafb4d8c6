//! Finding the images to classify: explicit files, and folders walked recursively.

use std::path::{Path, PathBuf};

use lookout_shared::image_io::{examine_folder_entry, FolderEntry};

use crate::error::EdgeError;

/// Expands files and folders into a list of image files: a file given explicitly is always kept (decoding
/// reports it if it is no image); in folders, recursively and in sorted order, entries are judged by
/// `lookout_shared::image_io::examine_folder_entry`, the rule the host's data sets follow: images by content
/// are kept, and so is whatever claims to be an image but is unusable (a broken link, an unreadable file, a
/// directory named `x.jpg`), so that classifying it reports the reason instead of leaving it out in silence.
/// Hidden files and folders are skipped.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, EdgeError> {
    let mut found = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| EdgeError::Io {
            path: input.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(input, &mut found)?;
        } else {
            found.push(input.clone());
        }
    }
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), EdgeError> {
    let io = |source| EdgeError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        match examine_folder_entry(&path) {
            FolderEntry::Directory => walk(&path, found)?,
            FolderEntry::Image { .. } | FolderEntry::Bad(_) => found.push(path),
            FolderEntry::Other => {}
        }
    }
    Ok(())
}

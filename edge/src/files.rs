//! Finding the images to classify: explicit files, and folders walked recursively.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::EdgeError;

/// File extensions taken as images when walking a folder, even if their content turns out not to be one
/// (so a broken `.jpg` is reported rather than silently skipped).
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// Whether the first bytes of `path` look like an image format the decoder knows.
pub fn sniff_is_image(path: &Path) -> bool {
    let mut head = [0u8; 32];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    image::guess_format(&head[..filled]).is_ok()
}

fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(e))
    })
}

/// Expands files and folders into a list of image files: a file given explicitly is always kept (decoding
/// reports it if it is no image); in folders, recursively and in sorted order, a file is kept if its content
/// looks like an image or its extension says it is one. Hidden files and folders are skipped.
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
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.is_file() && (has_image_extension(&path) || sniff_is_image(&path)) {
            found.push(path);
        }
    }
    Ok(())
}

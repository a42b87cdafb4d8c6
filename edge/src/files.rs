//! Finding the images to classify: explicit files, and folders walked recursively.

use std::path::{Path, PathBuf};

use crate::error::EdgeError;

/// Expands files and folders into a list of image files: a file given explicitly is always kept (decoding
/// reports it if it is no image); in folders, recursively and in sorted order, entries are judged by
/// `lookout_shared::image_io::walk_images` (the one walk, also `lookout predict`'s), the rule the host's data
/// sets follow: images by content are kept, and so is whatever claims to be an image but is unusable (a broken link, an unreadable file, a
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
    let walked = lookout_shared::image_io::walk_images(dir)
        .map_err(|(path, source)| EdgeError::Io { path, source })?;
    found.extend(walked.into_iter().map(|(path, _)| path));
    Ok(())
}

//! Frames from the images of a folder, in sorted order (for tests and for replaying recorded frames).

use std::path::PathBuf;

use super::{FrameSource, RawFrame};
use crate::error::EdgeError;
use crate::files::collect_images;

/// Every image file under a folder, one frame each, in sorted path order.
#[derive(Debug)]
pub struct DirSource {
    name: String,
    files: std::vec::IntoIter<PathBuf>,
}

impl DirSource {
    /// Lists the images under `dir` (recursively); an empty folder is an error.
    pub fn open(dir: PathBuf) -> Result<Self, EdgeError> {
        let name = format!("dir:{}", dir.display());
        if !dir.is_dir() {
            return Err(EdgeError::SourceOpen {
                source_spec: name,
                reason: "not a folder; check the path".into(),
            });
        }
        let files = collect_images(std::slice::from_ref(&dir))?;
        if files.is_empty() {
            return Err(EdgeError::SourceOpen {
                source_spec: name,
                reason: "the folder holds no images".into(),
            });
        }
        Ok(Self {
            name,
            files: files.into_iter(),
        })
    }
}

impl FrameSource for DirSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError> {
        let Some(path) = self.files.next() else {
            return Ok(None);
        };
        // One unreadable file is one failed frame, not the end of the stream.
        Ok(Some(match std::fs::read(&path) {
            Ok(bytes) => RawFrame::Encoded {
                bytes,
                name: Some(path),
            },
            Err(e) => RawFrame::Unreadable {
                path,
                kind: e.kind(),
                reason: e.to_string(),
            },
        }))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn is_file(&self) -> bool {
        true
    }
}

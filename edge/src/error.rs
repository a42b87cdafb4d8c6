//! The one error type of the edge library: frame sources and input files, plus the runtime's errors.

use std::path::PathBuf;

use lookout_runtime::RuntimeError;
use lookout_shared::image_io::DecodeError;

/// Everything that can go wrong on the edge. Each message says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// Loading the bundle or classifying with it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// An image could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A raw camera frame does not match its declared geometry.
    #[error("bad camera frame: {0}")]
    BadFrame(String),
    /// A frame source specification could not be understood.
    #[error(
        "unknown frame source {0:?}; use v4l2:/dev/videoN, http(s)://CAMERA/PATH (MJPEG or snapshots), rtsp://CAMERA/PATH, mjpeg:- (stdin), mjpeg:FILE or dir:PATH"
    )]
    BadSourceSpec(String),
    /// A frame source could not be opened.
    #[error("cannot open frame source {source_spec}: {reason}")]
    SourceOpen {
        /// The source as given by the user.
        source_spec: String,
        /// Why, with a hint.
        reason: String,
    },
    /// Reading from a frame source failed.
    #[error("reading frames from {source_spec}: {reason}")]
    SourceRead {
        /// The source as given by the user.
        source_spec: String,
        /// What went wrong.
        reason: String,
    },
    /// A file or folder given as input could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

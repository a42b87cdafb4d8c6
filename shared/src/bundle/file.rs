//! Bundles as files: read (checked while streaming), written atomically.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Bundle, BundleError, BundleHeader, Layout, CHECKSUM_LEN, HEADER_AT, HEADER_LEN_AT};

/// Reading or writing a bundle file failed. Displays as `<path>: <reason>`.
#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    /// The file system refused.
    #[error("{}: cannot {action}: {error}", path.display())]
    Io {
        /// The bundle path (or its temporary sibling, when that is what failed).
        path: PathBuf,
        /// What was being done, e.g. `read`, `write`.
        action: &'static str,
        /// The underlying error (part of the message, so not also exposed as `source`).
        error: io::Error,
    },
    /// The file was read but is not a usable bundle.
    #[error("{}: {error}", path.display())]
    Bundle {
        /// The bundle path.
        path: PathBuf,
        /// What is wrong with its content.
        error: BundleError,
    },
}

impl BundleFileError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            BundleFileError::Io { path, .. } | BundleFileError::Bundle { path, .. } => path,
        }
    }
}

impl Bundle {
    /// Writes the bundle atomically: a temporary file in the same directory, flushed to disk, then renamed
    /// over `path`. A crash or a full disk leaves either the old file or the new one, never half of one.
    pub fn write_file(&self, path: &Path) -> Result<(), BundleFileError> {
        let bytes = self.to_bytes().map_err(|error| BundleFileError::Bundle {
            path: path.to_path_buf(),
            error,
        })?;
        write_atomically(path, &bytes)
    }

    /// Reads and verifies a bundle file.
    pub fn read_file(path: &Path) -> Result<Bundle, BundleFileError> {
        let bytes = fs::read(path).map_err(|error| io_error(path, error))?;
        Bundle::from_vec(bytes).map_err(|error| bundle_error(path, error))
    }
}

/// A bundle file whose structure, checksum and header are verified, its model still on disk: the model
/// is read from the file as it is parsed ([`BundleReader::into_model_reader`]), so loading a bundle holds
/// its model in memory once (as parsed tensors) instead of twice (the file's bytes too: Lite0 q4, 11.5 MB
/// of the edge's peak).
#[derive(Debug)]
pub struct BundleReader {
    /// The verified header.
    pub header: BundleHeader,
    path: PathBuf,
    file: File,
    model_at: u64,
    model_len: u64,
}

impl BundleReader {
    /// The bundle path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the model in bytes (as stored: compressed for [`super::ModelFormat::NnefTarGz`]).
    pub fn model_len(&self) -> u64 {
        self.model_len
    }

    /// The header, and a buffered reader over the model's bytes.
    pub fn into_model_reader(self) -> Result<(BundleHeader, impl Read), BundleFileError> {
        let mut file = self.file;
        file.seek(SeekFrom::Start(self.model_at))
            .map_err(|error| io_error(&self.path, error))?;
        Ok((
            self.header,
            BufReader::with_capacity(64 * 1024, file.take(self.model_len)),
        ))
    }
}

impl Bundle {
    /// Opens and verifies a bundle file like [`Bundle::read_file`] (the same checks, in the same order,
    /// with the same errors), reading the model only to checksum it.
    pub fn open_file(path: &Path) -> Result<BundleReader, BundleFileError> {
        let fail = |error: io::Error| io_error(path, error);
        let bundle_error = |error: BundleError| bundle_error(path, error);
        let mut file = File::open(path).map_err(fail)?;
        let available = file.metadata().map_err(fail)?.len();
        // The fixed start, then as much as the header length says.
        let mut prefix =
            read_up_to(&mut file, Layout::prefix_len(None) as u64, available).map_err(fail)?;
        if let Some(len) = prefix.get(HEADER_LEN_AT..HEADER_AT) {
            let header_len = u32::from_le_bytes(len.try_into().unwrap_or_default());
            let rest = Layout::prefix_len(Some(header_len)) - prefix.len();
            prefix.extend(
                read_up_to(&mut file, rest as u64, available - prefix.len() as u64)
                    .map_err(fail)?,
            );
        }
        let layout = Layout::of(&prefix, available).map_err(bundle_error)?;

        file.seek(SeekFrom::Start(0)).map_err(fail)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut left = layout.checksum_at();
        while left > 0 {
            let n = buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            file.read_exact(&mut buffer[..n]).map_err(fail)?;
            hasher.update(&buffer[..n]);
            left -= n as u64;
        }
        let mut stored = [0u8; CHECKSUM_LEN];
        file.read_exact(&mut stored).map_err(fail)?;
        if hasher.finalize().as_slice() != stored {
            return Err(bundle_error(BundleError::ChecksumMismatch));
        }
        layout.check_trailing(available).map_err(bundle_error)?;
        let header = layout.decode_header(&prefix).map_err(bundle_error)?;
        let model_at = layout.model_at() as u64;
        Ok(BundleReader {
            header,
            path: path.to_path_buf(),
            file,
            model_at,
            model_len: layout.checksum_at() - model_at,
        })
    }
}

/// Reads `want` bytes, or all of the `available` ones if fewer.
fn read_up_to(file: &mut File, want: u64, available: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.by_ref()
        .take(want.min(available))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn bundle_error(path: &Path, error: BundleError) -> BundleFileError {
    BundleFileError::Bundle {
        path: path.to_path_buf(),
        error,
    }
}

fn io_error(path: &Path, error: io::Error) -> BundleFileError {
    BundleFileError::Io {
        path: path.to_path_buf(),
        action: "read",
        error,
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BundleFileError> {
    crate::atomic::write_atomic(path, bytes).map_err(|e| BundleFileError::Io {
        path: e.path,
        action: "write",
        error: e.source,
    })
}

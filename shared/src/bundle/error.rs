//! Why bytes are not a usable bundle, each in one line, and what they look like instead.

use alloc::string::String;
use core::fmt;

/// A well-known file format found where a bundle was expected: a hint for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ForeignFormat {
    /// An ONNX model (protobuf starting with the `ir_version` field).
    Onnx,
    /// A tar archive, e.g. a bare tract NNEF model.
    Tar,
    /// A gzip file, e.g. a compressed NNEF model (`.nnef.tgz`).
    Gzip,
    /// A zip archive, e.g. a PyTorch `.pth` checkpoint.
    Zip,
}

impl ForeignFormat {
    /// Recognises the formats people most often pass by mistake, from their first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ForeignFormat> {
        const TAR_MAGIC_AT: usize = 257;
        if bytes.starts_with(b"PK\x03\x04") {
            Some(ForeignFormat::Zip)
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Some(ForeignFormat::Gzip)
        } else if bytes.get(TAR_MAGIC_AT..TAR_MAGIC_AT + 5) == Some(b"ustar") {
            Some(ForeignFormat::Tar)
        } else if matches!(bytes, [0x08, 1..=32, ..]) {
            // Field 1 (`ir_version`, varint) with a plausible value: how every ONNX exporter starts a file.
            Some(ForeignFormat::Onnx)
        } else {
            None
        }
    }
}

impl fmt::Display for ForeignFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForeignFormat::Onnx => "an ONNX model",
            ForeignFormat::Tar => "a tar archive (a bare NNEF model?)",
            ForeignFormat::Gzip => "a gzip file (a compressed NNEF model?)",
            ForeignFormat::Zip => "a zip archive (a PyTorch checkpoint?)",
        })
    }
}

/// Why bytes are not a usable bundle. Every message is one line: what is wrong, then what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BundleError {
    /// The file does not start with [`MAGIC`](super::MAGIC).
    #[error(
        "not a lookout bundle{}: pass a .lookout file made by `lookout export`",
        match looks_like { Some(format) => alloc::format!(" (it looks like {format})"), None => String::new() }
    )]
    NotABundle {
        /// What the file looks like instead, when recognised.
        looks_like: Option<ForeignFormat>,
    },
    /// The bundle's format version is newer than this crate reads.
    #[error(
        "bundle format version {found} is newer than the {supported} this program reads: \
         it was written by a newer lookout; upgrade lookout-edge"
    )]
    NewerVersion {
        /// Version found in the file.
        found: u16,
        /// Newest version this crate reads ([`FORMAT_VERSION`](super::FORMAT_VERSION)).
        supported: u16,
    },
    /// The bundle's format version is older than this crate reads (or 0, which no lookout ever wrote).
    #[error(
        "bundle format version {found} is older than the oldest this program reads ({oldest}): \
         export the model again with a current `lookout export`"
    )]
    OlderVersion {
        /// Version found in the file.
        found: u16,
        /// Oldest version this crate reads ([`OLDEST_READABLE_VERSION`](super::OLDEST_READABLE_VERSION)).
        oldest: u16,
    },
    /// The bytes end before the bundle does.
    #[error(
        "bundle is truncated: it needs at least {needed} bytes but has {available}: \
         the copy is incomplete; copy it again"
    )]
    Truncated {
        /// Bytes needed to read on (the whole bundle once the lengths are known).
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The SHA-256 at the end does not match the content.
    #[error(
        "bundle checksum mismatch: the file was corrupted in transfer or on disk; copy it again"
    )]
    ChecksumMismatch,
    /// The header length is over [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
    #[error(
        "bundle header length {declared} is over the {limit}-byte limit: the file is corrupted; copy it again \
         (when exporting: the header holds far too many or too long labels)"
    )]
    HeaderTooLarge {
        /// Header length declared in (or, when writing, needed by) the bundle.
        declared: u64,
        /// [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
        limit: u64,
    },
    /// The checksum matches but the header does not decode: the writer used an incompatible header layout.
    #[error(
        "bundle header does not decode ({0}): it was written by an incompatible lookout build; \
         export it again with the lookout version matching lookout-edge"
    )]
    BadHeader(postcard::Error),
    /// Bytes follow the checksum.
    #[error(
        "bundle has {extra} unexpected bytes after its end: the file was appended to or concatenated; \
         copy the original again"
    )]
    TrailingData {
        /// Number of bytes after the checksum.
        extra: u64,
    },
}

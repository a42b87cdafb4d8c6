//! The `.lookout` model bundle: one file holding everything the edge needs.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `b"LOOKOUT\0"` |
//! | 2 | format version (u16), currently [`FORMAT_VERSION`] |
//! | 4 | header length H (u32) |
//! | H | [`BundleHeader`], postcard |
//! | 8 | model length M (u64) |
//! | M | model bytes (tract NNEF tar, gzip-compressed or not, see [`ModelFormat`]) |
//! | 32 | SHA-256 of every byte before it |
//!
//! Readers check, in this order: the magic, the version (so a bundle from a newer lookout says so even if
//! nothing after it is readable), the lengths against the bytes present (so a cut-off copy says "truncated"),
//! the checksum, trailing bytes, and only then decode the header. A checksum-verified header that does not
//! decode was written by an incompatible build, not damaged in transfer.
//!
//! Versions: 2 appended one field to the header, [`BundleHeader::unknown`] (the rejection of what is none of
//! the labels); 3 appended [`BundleHeader::background`] (which label is the camera's empty scene). Each version's
//! header is exactly the next one's without its last field, an `Option` that postcard writes as one zero byte
//! when it is `None`: the reader appends one zero byte per missing field and decodes the old layout as the new
//! type. Old bundles load, and say they have no rejection and no background.

use alloc::vec::Vec;
use sha2::{Digest, Sha256};

/// The first eight bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"LOOKOUT\0";
/// The bundle format version this crate writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 3;
/// The oldest bundle format version this crate reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;
/// Largest header a reader accepts: a flipped bit in the length must not make a reader allocate gigabytes,
/// and a real header (labels, preprocessing, provenance) is a few kilobytes.
pub const MAX_HEADER_LEN: u32 = 16 * 1024 * 1024;

const VERSION_AT: usize = MAGIC.len();
const HEADER_LEN_AT: usize = VERSION_AT + 2;
const HEADER_AT: usize = HEADER_LEN_AT + 4;
const MODEL_LEN_LEN: usize = 8;
const CHECKSUM_LEN: usize = 32;
/// Size of a bundle with an empty header and an empty model.
const MIN_BUNDLE_LEN: usize = HEADER_AT + MODEL_LEN_LEN + CHECKSUM_LEN;

mod error;
#[cfg(feature = "std")]
mod file;
mod header;

pub use error::{BundleError, ForeignFormat};
#[cfg(feature = "std")]
pub use file::{BundleFileError, BundleReader};
pub use header::{
    BackboneInfo, BundleHeader, ExportMetrics, HeadInfo, ModelFormat, OutputKind, Precision,
    UnknownInfo,
};

/// A whole bundle in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The header.
    pub header: BundleHeader,
    /// The model bytes, in `header.model_format`.
    pub model: Vec<u8>,
}

impl Bundle {
    /// Serialises the bundle in the `.lookout` layout (see the module docs).
    ///
    /// Fails only if the header is larger than [`MAX_HEADER_LEN`], which readers would reject.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let header = postcard::to_allocvec(&self.header).map_err(BundleError::BadHeader)?;
        let header_len = u32::try_from(header.len())
            .ok()
            .filter(|&len| len <= MAX_HEADER_LEN)
            .ok_or(BundleError::HeaderTooLarge {
                declared: header.len() as u64,
                limit: u64::from(MAX_HEADER_LEN),
            })?;
        let mut out = Vec::with_capacity(MIN_BUNDLE_LEN + header.len() + self.model.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&header_len.to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(self.model.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.model);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        Ok(out)
    }

    /// Reads a bundle, verifying its structure and checksum (see the module docs for the order of checks).
    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let (header, model) = parse(bytes)?;
        Ok(Bundle {
            header,
            model: model.to_vec(),
        })
    }

    /// [`Bundle::from_bytes`] on an owned buffer, which becomes the model's: the model is moved to the front
    /// in place instead of copied, so reading a bundle needs its size in memory once, not twice (Lite0 q4: 12 MB
    /// less at the edge's peak).
    pub fn from_vec(mut bytes: Vec<u8>) -> Result<Bundle, BundleError> {
        let (header, start, len) = {
            let (header, model) = parse(&bytes)?;
            // `parse` returns a sub-slice of `bytes`: its offset is where the model starts.
            let start = model.as_ptr() as usize - bytes.as_ptr() as usize;
            (header, start, model.len())
        };
        bytes.truncate(start + len);
        bytes.drain(..start);
        Ok(Bundle {
            header,
            model: bytes,
        })
    }

    /// Reads only the header, without copying the model.
    ///
    /// It still verifies the checksum over the whole bundle: `lookout-edge info` on a corrupted file must say
    /// so rather than show a plausible header, and SHA-256 over a model of tens of megabytes takes well under
    /// a second even on a Pi.
    pub fn peek_header(bytes: &[u8]) -> Result<BundleHeader, BundleError> {
        parse(bytes).map(|(header, _model)| header)
    }
}

/// Checks `bytes` and returns the decoded header and the model bytes.
fn parse(bytes: &[u8]) -> Result<(BundleHeader, &[u8]), BundleError> {
    let layout = Layout::of(bytes, bytes.len() as u64)?;
    // layout.total_len <= bytes.len(), so it and everything inside it fit in usize.
    let checksum_at = layout.checksum_at() as usize;
    let computed = Sha256::digest(&bytes[..checksum_at]);
    if computed.as_slice() != &bytes[checksum_at..checksum_at + CHECKSUM_LEN] {
        return Err(BundleError::ChecksumMismatch);
    }
    layout.check_trailing(bytes.len() as u64)?;
    let header = layout.decode_header(bytes)?;
    Ok((header, &bytes[layout.model_at()..checksum_at]))
}

/// Where the parts of a bundle are, from its first bytes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    version: u16,
    header_len: usize,
    total_len: u64,
}

impl Layout {
    /// Checks the magic, the version, the header length and the model length against `available` bytes in
    /// all (the bundle's size). `bytes` is the bundle's start: at least its first [`Layout::prefix_len`]
    /// bytes, or all of it if it is shorter.
    fn of(bytes: &[u8], available: u64) -> Result<Layout, BundleError> {
        let truncated = |needed: u64| BundleError::Truncated { needed, available };

        // A cut-off copy of a bundle still starts with (part of) the magic: that is truncation, not a foreign
        // file.
        let magic_present = bytes.len().min(MAGIC.len());
        if bytes[..magic_present] != MAGIC[..magic_present] {
            return Err(BundleError::NotABundle {
                looks_like: ForeignFormat::sniff(bytes),
            });
        }

        let version = u16::from_le_bytes(
            read_array(bytes, VERSION_AT).ok_or(truncated(MIN_BUNDLE_LEN as u64))?,
        );
        if version > FORMAT_VERSION {
            return Err(BundleError::NewerVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version < OLDEST_READABLE_VERSION {
            return Err(BundleError::OlderVersion {
                found: version,
                oldest: OLDEST_READABLE_VERSION,
            });
        }

        let header_len = u32::from_le_bytes(
            read_array(bytes, HEADER_LEN_AT).ok_or(truncated(MIN_BUNDLE_LEN as u64))?,
        );
        if header_len > MAX_HEADER_LEN {
            return Err(BundleError::HeaderTooLarge {
                declared: u64::from(header_len),
                limit: u64::from(MAX_HEADER_LEN),
            });
        }
        // Bounded by MAX_HEADER_LEN, so this fits in usize on every target.
        let header_len = header_len as usize;
        let model_len = u64::from_le_bytes(
            read_array(bytes, HEADER_AT + header_len)
                .ok_or(truncated((MIN_BUNDLE_LEN + header_len) as u64))?,
        );

        // Computed in u64 (saturating) because a corrupted length may not fit in a 32-bit usize.
        let total_len = ((MIN_BUNDLE_LEN + header_len) as u64).saturating_add(model_len);
        if total_len > available {
            return Err(truncated(total_len));
        }
        Ok(Layout {
            version,
            header_len,
            total_len,
        })
    }

    /// How many of a bundle's first bytes [`Layout::of`] and [`Layout::decode_header`] read, given the
    /// header length field (`None`: only that field's end).
    #[cfg(feature = "std")]
    fn prefix_len(header_len: Option<u32>) -> usize {
        match header_len {
            None => HEADER_AT,
            Some(len) => HEADER_AT + (len.min(MAX_HEADER_LEN) as usize) + MODEL_LEN_LEN,
        }
    }

    fn model_at(&self) -> usize {
        HEADER_AT + self.header_len + MODEL_LEN_LEN
    }

    fn checksum_at(&self) -> u64 {
        self.total_len - CHECKSUM_LEN as u64
    }

    /// Checked after the checksum: if a corrupted model length made the bundle look shorter, the checksum
    /// (read from the wrong place) fails first and the message says "corrupted", which is the truth.
    fn check_trailing(&self, available: u64) -> Result<(), BundleError> {
        if self.total_len < available {
            return Err(BundleError::TrailingData {
                extra: available - self.total_len,
            });
        }
        Ok(())
    }

    /// Decodes the header from the bundle's first bytes.
    fn decode_header(&self, bytes: &[u8]) -> Result<BundleHeader, BundleError> {
        let header_bytes = &bytes[HEADER_AT..HEADER_AT + self.header_len];
        // An older header is a newer one without its last fields, each an `Option` whose `None` postcard writes
        // as one zero byte: appending one zero per missing field decodes the old layout as the new type.
        let missing_fields = usize::from(FORMAT_VERSION - self.version);
        let (header, unused) = if missing_fields > 0 {
            let mut upgraded = header_bytes.to_vec();
            upgraded.resize(header_bytes.len() + missing_fields, 0);
            let (header, unused) = postcard::take_from_bytes::<BundleHeader>(&upgraded)
                .map_err(BundleError::BadHeader)?;
            (header, unused.len())
        } else {
            let (header, unused) = postcard::take_from_bytes::<BundleHeader>(header_bytes)
                .map_err(BundleError::BadHeader)?;
            (header, unused.len())
        };
        if unused != 0 {
            // The header has fields this build does not know: same verdict as an undecodable header.
            return Err(BundleError::BadHeader(
                postcard::Error::DeserializeBadEncoding,
            ));
        }
        Ok(header)
    }
}

/// The `N` bytes at `at`, if present.
fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

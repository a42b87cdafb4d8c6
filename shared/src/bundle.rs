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

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::preprocess::PreprocessSpec;

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

/// Numeric precision of the model inside a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Precision {
    /// 32-bit float weights and activations.
    F32,
    /// 16-bit float weights and activations (native on ARMv8.2 FP16, e.g. the Pi 5's Cortex-A76).
    F16,
    /// 8-bit integer weights and activations, statically calibrated.
    Int8,
    /// Float activations; the head's large matrix weights block-quantized to 4 bits.
    F32WeightsQ4,
    /// f32 activations; every matrix weight that fills whole 32-weight blocks (pointwise convolutions, the
    /// head, the rejection's bank) block-quantized to 4 bits (Q4_0), the rest f32.
    Q4,
    /// f16 activations and float weights (as `F16`), with the matrix weights block-quantized to 4 bits as
    /// in `Q4` (fast on ARMv8.2 FP16, e.g. a Pi 5).
    F16Q4,
}

/// How the model's output becomes class probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// Names as run.json writes them ("sigmoid"); the bundle's postcard encoding uses the variant index, so the
// names are not part of the bundle format.
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// One output: the probability of label index 1 (label index 0 otherwise).
    Sigmoid,
    /// One probability per label, summing to 1.
    Softmax,
}

/// Serialization of the model bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModelFormat {
    /// tract NNEF, tar archive (what `tract_nnef::Nnef::write_to_tar` writes).
    NnefTar,
    /// The same tar, gzip-compressed (tract's `.nnef.tgz`; its reader inflates it as it reads). What exports
    /// write since 4-bit bundles: deflate took 5.0 % off a Lite0 q4 model, 12.8 % off a MobileNetV3-Small q4
    /// one and 8-15 % off float ones (measured on the tutorial-head runs, README). Appended to the enum: an older reader refuses
    /// such a bundle ("written by an incompatible build") instead of misreading it.
    NnefTarGz,
}

/// Which backbone the model was built on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BackboneInfo {
    /// Catalogue name or file stem, e.g. `mobilenet_v3_large`.
    pub name: String,
    /// SHA-256 (hex) of the backbone file the features were extracted with.
    pub sha256: String,
    /// Node the features were taken from, when not the model's output.
    pub cut: Option<String>,
}

/// The classifier head on top of the backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HeadInfo {
    /// Head kind: `tutorial`, `linear`, `mlp`.
    pub kind: String,
    /// One-line description, e.g. `flatten → Linear(47040,256) → ReLU → Dropout(0.5) → Linear(256,1)`.
    pub description: String,
    /// Number of trainable parameters.
    pub parameters: u64,
}

/// What was measured when the bundle was exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ExportMetrics {
    /// Test-split accuracy of this exported model (0..1), run through the edge runtime.
    pub accuracy: f32,
    /// Test-split accuracy of the float model it was exported from (0..1).
    pub float_accuracy: f32,
    /// Fraction of test images where this model and the float model give the same label (0..1).
    pub agreement: f32,
    /// Largest absolute difference of the top probability against the float model.
    pub max_probability_diff: f32,
    /// Number of test images measured.
    pub test_images: u32,
    /// Time to load and optimise the model, in milliseconds, on the exporting machine.
    pub load_ms: f32,
    /// Size of the whole bundle file in bytes (written after the fact; 0 while unknown).
    pub file_size: u64,
}

/// How the model tells what is none of its labels: the graph's second output is an out-of-distribution score
/// for the image, and a score above `threshold` means "unknown".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnknownInfo {
    /// What the score is, e.g. `knn-cosine`: 1 − the cosine similarity of the image's pooled backbone
    /// features to the nearest of `bank_size` training images.
    pub method: String,
    /// Scores above this are unknown.
    pub threshold: f32,
    /// The fraction of held-out in-distribution images the threshold was calibrated to keep (e.g. 0.95).
    pub keep: f32,
    /// Number of training images the score compares against.
    pub bank_size: u32,
}

/// Everything about the model except its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleHeader {
    /// Class names; the index is the label index.
    pub labels: Vec<String>,
    /// How images must be prepared for the model.
    pub preprocess: PreprocessSpec,
    /// The backbone the model was built on.
    pub backbone: BackboneInfo,
    /// The classifier head.
    pub head: HeadInfo,
    /// Numeric precision of the model.
    pub precision: Precision,
    /// Model input shape, e.g. `[1, 3, 224, 224]`.
    pub input_shape: Vec<u32>,
    /// How outputs become probabilities.
    pub output: OutputKind,
    /// Decision threshold on the probability of label 1 for sigmoid models (0.5 unless tuned).
    pub threshold: f32,
    /// What was measured at export, if anything.
    pub metrics: Option<ExportMetrics>,
    /// Version of lookout that wrote the bundle.
    pub lookout_version: String,
    /// Serialization of the model bytes.
    pub model_format: ModelFormat,
    /// The rejection of unknown images, when the model has one (since format version 2, see the module docs).
    pub unknown: Option<UnknownInfo>,
    /// The index of the label that is the camera's empty scene (`lookout fit --background`), when there is
    /// one: a frame of that label is answered as "nothing", which is neither one of the other labels nor
    /// unknown, and never acts (since format version 3; always last, see the module docs).
    pub background: Option<u32>,
}

/// A whole bundle in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The header.
    pub header: BundleHeader,
    /// The model bytes, in `header.model_format`.
    pub model: Vec<u8>,
}

impl BundleHeader {
    /// Number of classes the model distinguishes.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The name of label `index`, if the model has that many labels.
    pub fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    /// The index of the background label (the empty scene), if the model has one.
    pub fn background_label(&self) -> Option<usize> {
        self.background.map(|index| index as usize)
    }

    /// True when `index` is the background label: a frame of it shows nothing to act on.
    pub fn is_background(&self, index: usize) -> bool {
        self.background_label() == Some(index)
    }
}

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
    /// The file does not start with [`MAGIC`].
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
        /// Newest version this crate reads ([`FORMAT_VERSION`]).
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
        /// Oldest version this crate reads ([`OLDEST_READABLE_VERSION`]).
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
    /// The header length is over [`MAX_HEADER_LEN`].
    #[error(
        "bundle header length {declared} is over the {limit}-byte limit: the file is corrupted; copy it again \
         (when exporting: the header holds far too many or too long labels)"
    )]
    HeaderTooLarge {
        /// Header length declared in (or, when writing, needed by) the bundle.
        declared: u64,
        /// [`MAX_HEADER_LEN`].
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

#[cfg(feature = "std")]
pub use self::file::{BundleFileError, BundleReader};

#[cfg(feature = "std")]
mod file {
    use std::fs::{self, File};
    use std::io::{self, BufReader, Read, Seek, SeekFrom};
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};

    use super::{
        Bundle, BundleError, BundleHeader, Layout, CHECKSUM_LEN, HEADER_AT, HEADER_LEN_AT,
    };

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
}

//! What the Lookout host and edge must agree on, in one place:
//!
//! - [`preprocess`]: the preprocessing recipe ([`PreprocessSpec`]) and, with the `std` feature, its one
//!   implementation, used by the host for feature extraction and by the edge at inference time;
//! - [`bundle`]: the `.lookout` model bundle format (magic, version, postcard header, tract NNEF model, checksum);
//! - [`region`]: a region of a frame ([`Region`], `--roi` and `--zone`), cropped before preprocessing;
//! - [`detection`]: the [`Detection`] message the edge sends to a microcontroller (a protocol version byte,
//!   postcard, CRC-16, COBS framing), and the [`detection::FrameReader`] both ends read it with.
//!
//! With `default-features = false` the crate is `no_std` + `alloc`, so firmware can read the formats.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod atomic;
pub mod bundle;
pub mod detection;
#[cfg(feature = "std")]
pub mod image_io;
pub mod preprocess;
pub mod region;

#[cfg(feature = "std")]
pub use bundle::BundleFileError;
pub use bundle::{Bundle, BundleError, BundleHeader};
pub use detection::{Detection, DetectionError, FrameReader, MAX_FRAME_LEN};
pub use preprocess::PreprocessSpec;
pub use region::{Region, RegionError};

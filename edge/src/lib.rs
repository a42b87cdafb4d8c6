//! Lookout on the device: frame sources ([`source`]), the newest-frame-wins hand-off ([`slot`]), smoothing and
//! events ([`smoothing`]), actions ([`gpio`], [`actions`]) and the watch loop that joins them with its sinks
//! ([`pipeline`]), around the bundle runtime of `lookout-runtime`, whose [`Model`] this crate re-exports.

pub mod actions;
pub mod error;
pub mod files;
pub mod gpio;
pub mod pipeline;
pub mod slot;
pub mod smoothing;
pub mod source;
pub mod stats;

pub use error::EdgeError;
pub use lookout_runtime::{
    error_line, Model, Prediction, RuntimeError, RuntimeOptions, UnknownPolicy, WeightMemory,
};

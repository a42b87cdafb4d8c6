//! Lookout on the device: frame sources ([`source`]), the newest-frame-wins hand-off ([`slot`]), smoothing and
//! events ([`smoothing`]), actions ([`gpio`], [`actions`]) and the watch loop that joins them with its sinks
//! ([`pipeline`]), around the bundle runtime of `lookout-runtime`, whose [`Model`] this crate re-exports.
//!
//! The main types: [`source::FrameSource`] (a camera, an IP camera over HTTP or RTSP, a pipe, a folder; opened
//! from a [`source::SourceSpec`]), [`pipeline::Pipeline`] (the loop: decode, classify each region, smooth, fire
//! events) and [`pipeline::Sink`] (what acts on results: JSON lines, GPIO, serial, a command, MQTT, the preview
//! page, frame capture); [`pipeline::reload`] swaps the bundle without a restart. The `lookout-edge` binary
//! (`src/cli`) only parses arguments and wires these together.

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

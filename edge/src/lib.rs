//! Lookout's edge runtime: loads a `.lookout` bundle into tract and classifies images on the CPU.
//!
//! The host uses [`Model`] to evaluate exported bundles exactly as the edge will run them; the `lookout-edge`
//! binary adds frame sources ([`source`]), the newest-frame-wins hand-off ([`slot`]), smoothing and events
//! ([`smoothing`]) and actions ([`gpio`]).

pub mod actions;
pub mod error;
pub mod files;
pub mod gpio;
pub mod model;
pub mod slot;
pub mod smoothing;
pub mod source;
pub mod stats;

pub use error::{error_line, EdgeError};
pub use model::{Model, Prediction, RuntimeOptions};

//! The Lookout host library, laid out as its pipeline (each stage a folder, each depending only on the ones
//! before it):
//!
//! ```text
//! dataset  (folder scan, bad files, stratified split)
//!   → transform  (image operations: augmentation views, camera conditions)
//!   → features  (backbone, device, extractor, the features cache)
//!     → head  (the head's maths, the run directory, training)
//!       → bundle  (backbone + head in one graph, measured and written for the edge)
//!         → report  (metrics, plots, inspect)
//! ```
//!
//! [`fit`] runs them all in order; the `lookout` binary (`src/cli`) is a thin clap front end over them.
//! [`rng`] is every seeded random draw.

pub mod bundle;
pub mod dataset;
pub mod features;
pub mod fit;
pub mod head;
pub mod report;
pub mod rng;
pub mod transform;

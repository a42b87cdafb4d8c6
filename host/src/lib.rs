//! The Lookout host library: data sets, feature extraction, training, evaluation and export.
//!
//! Layering (as tract's): `data` (image folders, splits) → `features` (the cache format) → `extract`
//! (backbone over images) → `train` / `evaluate` → `export` (bundles for the edge). The `lookout` binary is a
//! thin clap front end over these modules.

pub mod backbone;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod export;
pub mod extract;
pub mod features;
pub mod fit;
pub mod inspect;
pub mod plots;
pub mod run;
pub mod train;

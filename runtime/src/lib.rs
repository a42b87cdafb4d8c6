//! Lookout's bundle runtime: loads a `.lookout` bundle into tract and classifies images on the CPU.
//!
//! Both sides use it: `lookout-edge` runs bundles on the Pi with it, and the host measures every export through
//! it, so a bundle is judged exactly as the Pi will run it. It holds no device I/O (camera, GPIO, serial): those
//! live in `lookout-edge`, and the host links none of them.
//!
//! - [`Model`]: load and validate a bundle, classify an image or a preprocessed tensor.
//! - [`shape::pin_input_shape`]: the one place a model's symbolic input dimensions (the batch) become concrete;
//!   bundles here, and backbone files in `lookout-models`, go through it.
//! - [`error_line`]: how both command-line tools print an error and its causes on one line.
//! - [`kernels`]: kernels tract lacks (depthwise convolutions, an AVX-512 matrix product), registered into its
//!   registries.
//! - [`plan`]: how every model becomes a plan on the CPU, here and in the host: tract's optimiser, then the
//!   rewrites of ours it lists (per-channel operations tract leaves on its generic path; clips fused into the
//!   depthwise convolutions and the matrix products before them; channel-last activations packed by a vector
//!   transpose; zero padding by rows; im2col panels by vector).
//! - [`WeightMemory`]: whether a `q4` bundle's convolution weights stay in blocks or are expanded at load.

pub mod error;
pub mod im2col;
pub mod kernels;
pub mod model;
pub mod pack;
pub mod plan;
pub mod profile;
pub mod reshape_fusion;
pub mod shape;
pub mod weights;
pub mod zero_pad;

pub use error::{error_line, RuntimeError};
pub use model::{Model, Prediction, RuntimeOptions, UnknownPolicy};
pub use weights::WeightMemory;

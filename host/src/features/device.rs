//! Where the backbone runs: the CPU, or a GPU through tract's runtime registry.
//!
//! GPU runtimes are optional cargo features (`cuda`; `metal` on macOS), so a default build needs no GPU
//! toolkit. They are reached only through `tract_core::runtime`, whose `check()` fails cleanly where the
//! driver is missing (calling the CUDA transform directly panics on a machine without a GPU).

use std::fmt;
use std::str::FromStr;

use tract_core::runtime::{runtime_for_name, Runtime};

// Link the GPU runtimes so their `register_runtime!` entries exist in the registry.
#[cfg(feature = "cuda")]
extern crate tract_cuda;
#[cfg(all(feature = "metal", target_os = "macos"))]
extern crate tract_metal;

/// The device asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A usable GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU (build with `--features cuda`).
    Cuda,
    /// An Apple GPU (macOS, build with `--features metal`).
    Metal,
}

impl DeviceChoice {
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["auto", "cpu", "cuda", "metal"];
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            "metal" => Ok(DeviceChoice::Metal),
            _ => Err(DeviceError::UnknownName(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Metal => "metal",
        })
    }
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Not one of [`DeviceChoice::NAMES`].
    #[error("unknown device {0:?}: use auto, cpu, cuda or metal")]
    UnknownName(String),
    /// The runtime was not compiled in.
    #[error("this lookout was built without {name} support: rebuild with `cargo build --release --features {feature}`{extra}")]
    NotCompiled {
        /// Device name.
        name: &'static str,
        /// Cargo feature to enable.
        feature: &'static str,
        /// Platform note.
        extra: &'static str,
    },
    /// The runtime is compiled in but the machine cannot run it (no driver, no GPU).
    #[error("device {name} is not usable on this machine: {reason}; use --device cpu (or auto)")]
    Unusable {
        /// Device name.
        name: &'static str,
        /// What tract said.
        reason: String,
    },
}

/// A runtime ready to prepare models on.
#[derive(Clone, Copy)]
pub struct Device {
    /// tract's runtime.
    pub runtime: &'static dyn Runtime,
    /// `cpu`, `cuda` or `metal`.
    pub name: &'static str,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name)
    }
}

impl Device {
    /// True for a GPU runtime.
    pub fn is_gpu(&self) -> bool {
        self.name != "cpu"
    }
}

/// Whether the GPU runtime `name` was compiled into this binary.
fn compiled_in(name: &str) -> bool {
    match name {
        "cuda" => cfg!(feature = "cuda"),
        "metal" => cfg!(all(feature = "metal", target_os = "macos")),
        _ => false,
    }
}

fn gpu(name: &'static str) -> Result<Device, DeviceError> {
    if !compiled_in(name) {
        return Err(DeviceError::NotCompiled {
            name,
            feature: name,
            extra: if name == "metal" { " on macOS" } else { "" },
        });
    }
    let unusable = |reason: String| DeviceError::Unusable { name, reason };
    let runtime = runtime_for_name(name)
        .map_err(|e| unusable(format!("{e:#}")))?
        .ok_or_else(|| unusable("runtime not registered".into()))?;
    runtime.check().map_err(|e| unusable(format!("{e:#}")))?;
    Ok(Device { runtime, name })
}

/// The CPU runtime: tract's, preparing models as the bundle runtime does (`lookout_runtime::plan`).
pub fn cpu() -> Device {
    Device {
        runtime: &lookout_runtime::plan::CpuRuntime,
        name: "cpu",
    }
}

/// Resolves a choice to a usable device. `Auto` tries the compiled-in GPUs, then falls back to the CPU and
/// says why in the second value (`None` when a GPU was found or the CPU was asked for).
pub fn select(choice: DeviceChoice) -> Result<(Device, Option<String>), DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok((cpu(), None)),
        DeviceChoice::Cuda => gpu("cuda").map(|d| (d, None)),
        DeviceChoice::Metal => gpu("metal").map(|d| (d, None)),
        DeviceChoice::Auto => {
            let mut reasons = Vec::new();
            for name in ["cuda", "metal"] {
                if !compiled_in(name) {
                    continue;
                }
                match gpu(name) {
                    Ok(device) => return Ok((device, None)),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            let why = if reasons.is_empty() {
                "no GPU support compiled in".to_string()
            } else {
                reasons.join("; ")
            };
            Ok((cpu(), Some(why)))
        }
    }
}

//! State dict → tract graph → NNEF tar.

use std::path::Path;

use tract_core::internal::*;

use crate::cache::temp_sibling;
use crate::catalogue::Architecture;
use crate::efficientnet_lite;
use crate::mobilenet_v3::{self, Outputs, Variant};
use crate::state_dict::StateDict;
use crate::ModelsError;

/// Input side length the converted graphs are built for (all catalogue weights are 224×224 ImageNet models).
pub const INPUT_SIZE: usize = 224;

/// Builds the graph of `arch` from a state dict.
pub fn build_graph(
    sd: &StateDict,
    arch: Architecture,
    outputs: Outputs,
) -> Result<TypedModel, ModelsError> {
    match arch {
        Architecture::MobilenetV3Large => {
            mobilenet_v3::build(sd, Variant::Large, INPUT_SIZE, outputs)
        }
        Architecture::MobilenetV3Small => {
            mobilenet_v3::build(sd, Variant::Small, INPUT_SIZE, outputs)
        }
        Architecture::EfficientnetLite0 => efficientnet_lite::build(sd, INPUT_SIZE, outputs),
    }
}

/// Reads a `.pth` and builds its graph.
pub fn convert_file(
    path: &Path,
    arch: Architecture,
    outputs: Outputs,
) -> Result<TypedModel, ModelsError> {
    let sd = StateDict::read(path)?.for_arch(arch.as_str());
    build_graph(&sd, arch, outputs)
}

/// Writes a graph as an NNEF tar, atomically.
pub fn write_nnef(model: &TypedModel, path: &Path) -> Result<(), ModelsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ModelsError::io("creating", dir, e))?;
    }
    let tmp = temp_sibling(path);
    let file = std::fs::File::create(&tmp).map_err(|e| ModelsError::io("creating", &tmp, e))?;
    let mut writer = std::io::BufWriter::new(file);
    // Extended identifiers keep torchvision's dotted node names (`features.6`) instead of mangling them to
    // `features_6`; every tract NNEF loader parses them.
    let mut nnef = tract_nnef::nnef();
    nnef.allow_extended_identifier_syntax(true);
    nnef.write_to_tar(model, &mut writer)?;
    let file = writer
        .into_inner()
        .map_err(|e| ModelsError::io("writing", &tmp, e.into_error()))?;
    file.sync_all()
        .map_err(|e| ModelsError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelsError::io("renaming into", path, e))
}

/// Loads an NNEF tar written by [`write_nnef`] (not optimised: call `into_optimized` to run it fast).
pub fn read_nnef(path: &Path) -> Result<TypedModel, ModelsError> {
    Ok(tract_nnef::nnef().model_for_path(path)?)
}

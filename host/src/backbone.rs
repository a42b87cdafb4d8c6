//! Loading a backbone for the host: a model file given by path, or a catalogue name resolved by
//! `lookout_models`, with the preprocessing it needs and tract's typed model ready to run or inspect.

use std::io::Read;
use std::path::{Path, PathBuf};

use lookout_shared::preprocess::Layout;
use lookout_shared::PreprocessSpec;
use sha2::{Digest, Sha256};
use tract_core::prelude::*;
use tract_onnx::prelude::{InferenceModelExt, WithOnnx};

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
    /// Not a file and not a catalogue name.
    #[error("unknown backbone {name}: {reason}")]
    Unknown {
        /// What was given.
        name: String,
        /// Why the catalogue could not resolve it.
        reason: String,
    },
    /// A model file without a known preprocessing.
    #[error("{}: a model file does not say how to preprocess images; add --preprocess tf-inception (the ONNX backbones of the Lookout docs), --preprocess torchvision, or explicit --resize/--crop/--mean/--std", path.display())]
    NoPreprocess {
        /// The file.
        path: PathBuf,
    },
    /// The file extension is not a model format lookout reads.
    #[error("{}: not a model format lookout reads; give an .onnx, .nnef.tar or .nnef.tgz file", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// tract could not load or type the model.
    #[error("{}: cannot load the model: {reason}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// tract's message.
        reason: String,
    },
    /// `--cut` names no node of the model.
    #[error("{}: no node named {name:?}; nodes with a similar name: {nearby}", path.display())]
    UnknownNode {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// Nearby node names.
        nearby: String,
    },
    /// The preprocessing does not fit the model input.
    #[error("{}: {reason}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
}

/// On-disk model formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// ONNX protobuf.
    Onnx,
    /// tract NNEF archive (`.nnef.tar`, `.nnef.tgz`, `.nnef.tar.gz`).
    Nnef,
}

impl ModelFormat {
    /// The format of a model file, from its name.
    pub fn of(path: &Path) -> Option<ModelFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".onnx") {
            Some(ModelFormat::Onnx)
        } else if name.ends_with(".nnef.tar")
            || name.ends_with(".nnef.tgz")
            || name.ends_with(".nnef.tar.gz")
        {
            Some(ModelFormat::Nnef)
        } else {
            None
        }
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
    /// sha256 of the model file (or, for catalogue entries, of the source weights), hex.
    pub sha256: String,
    /// How images must be preprocessed for it.
    pub preprocess: PreprocessSpec,
    /// Node the catalogue says the features come from; `None` = the model's output.
    pub feature_node: Option<String>,
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, BackboneError> {
    let io = |source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let resolved = lookout_models::resolve(spec).map_err(|e| BackboneError::Unknown {
            name: spec.to_string(),
            reason: format!("{e} (or give a path to an .onnx file)"),
        })?;
        let format =
            ModelFormat::of(&resolved.path).ok_or_else(|| BackboneError::UnknownFormat {
                path: resolved.path.clone(),
            })?;
        Ok(Backbone {
            name: resolved.name,
            format,
            sha256: resolved.sha256,
            preprocess: preprocess.unwrap_or(resolved.preprocess),
            feature_node: resolved.feature_node,
            path: resolved.path,
        })
    }

    /// A backbone from a model file; `preprocess` is required.
    pub fn from_file(
        path: &Path,
        preprocess: Option<PreprocessSpec>,
    ) -> Result<Backbone, BackboneError> {
        let format = ModelFormat::of(path).ok_or_else(|| BackboneError::UnknownFormat {
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
            sha256: sha256_file(&path)?,
            format,
            preprocess,
            feature_node: None,
            path,
        })
    }

    fn load_error(&self, e: impl std::fmt::Display) -> BackboneError {
        BackboneError::Load {
            path: self.path.clone(),
            reason: e.to_string(),
        }
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
        let model = match self.format {
            ModelFormat::Onnx => {
                let mut model = tract_onnx::onnx()
                    .model_for_path(&self.path)
                    .map_err(|e| self.load_error(format!("{e:#}")))?
                    .with_input_fact(0, f32::fact(shape).into())
                    .map_err(|e| self.load_error(format!("{e:#}")))?;
                if let Some(cut) = cut {
                    let names: Vec<String> = model.node_names().map(str::to_string).collect();
                    model
                        .select_outputs_by_name([cut])
                        .map_err(|_| self.unknown_node(cut, &names))?;
                }
                model
                    .into_typed()
                    .map_err(|e| self.load_error(format!("{e:#}")))?
            }
            ModelFormat::Nnef => {
                let mut model = tract_nnef::nnef()
                    .with_onnx()
                    .model_for_path(&self.path)
                    .map_err(|e| self.load_error(format!("{e:#}")))?
                    .with_input_fact(0, f32::fact(shape))
                    .map_err(|e| self.load_error(format!("{e:#}")))?;
                if let Some(cut) = cut {
                    let names: Vec<String> = model.node_names().map(str::to_string).collect();
                    model
                        .select_outputs_by_name([cut])
                        .map_err(|_| self.unknown_node(cut, &names))?;
                }
                model
            }
        };
        model
            .into_decluttered()
            .map_err(|e| self.load_error(format!("{e:#}")))
    }

    fn unknown_node(&self, name: &str, names: &[String]) -> BackboneError {
        BackboneError::UnknownNode {
            path: self.path.clone(),
            name: name.to_string(),
            nearby: nearby_names(name, names, 8).join(", "),
        }
    }

    /// True when the recipe produces channels-last tensors (features then are `[.., H, W, C]`).
    pub fn channels_last(&self) -> bool {
        self.preprocess.layout == Layout::Nhwc
    }
}

/// The `k` names closest to `name` (edit distance on lower case), best first.
pub fn nearby_names(name: &str, names: &[String], k: usize) -> Vec<String> {
    let target = name.to_lowercase();
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .map(|n| {
            let lower = n.to_lowercase();
            // A name containing the query (or the other way round) is what the user most likely meant.
            let bonus = if lower.contains(&target) || target.contains(&lower) {
                0
            } else {
                1000
            };
            (bonus + levenshtein(&target, &lower), n)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(k).map(|(_, n)| n.clone()).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

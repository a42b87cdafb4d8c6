//! Loading a model file (ONNX or tract NNEF) as a typed tract model: the one loader behind `lookout inspect`,
//! feature extraction and export, for files a user gives and for the graphs the catalogue converts.
//!
//! Both formats end in the same steps: move the output to the requested node (`--cut`), pin the input shape
//! through the whole graph ([`lookout_runtime::shape::pin_input_shape`]: converted graphs keep a symbolic batch
//! that setting the input fact alone does not remove), declutter.

use std::path::{Path, PathBuf};

use lookout_runtime::shape::{pin_input_shape, ShapeError};
use tract_core::prelude::*;
use tract_onnx::prelude::{InferenceModelExt, WithOnnx};

/// On-disk model formats Lookout reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// ONNX protobuf (`.onnx`).
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

/// What can go wrong loading a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file name says no format Lookout reads.
    #[error("{}: not a model format lookout reads; give an .onnx, .nnef.tar or .nnef.tgz file", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// tract could not read or type the model.
    #[error("{}: cannot load the model", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// tract's error, with its chain.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The node to cut at is not in the model.
    #[error("{}: no node named {name:?}; nodes with a similar name: {nearby}", path.display())]
    UnknownNode {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The closest node names, comma-separated.
        nearby: String,
    },
    /// The input shape does not fit the model.
    #[error("{}: the input shape does not fit the model", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        #[source]
        source: ShapeError,
    },
}

/// Loads `path` as a decluttered typed model. With `input`, the single input is pinned to that shape and every
/// shape in the graph is concrete; without it, symbolic dimensions stay (for looking at the model's own
/// input). `cut` moves the output to a node or tensor name.
pub fn load_model_file(
    path: &Path,
    input: Option<&[usize]>,
    cut: Option<&str>,
) -> Result<TypedModel, ModelFileError> {
    let load = |e: TractError| ModelFileError::Load {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let format = ModelFormat::of(path).ok_or_else(|| ModelFileError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    let mut model = match format {
        ModelFormat::Onnx => {
            let mut model = tract_onnx::onnx().model_for_path(path).map_err(load)?;
            if let Some(shape) = input {
                // ONNX's analysis needs the input fact to type the graph at all.
                model = model
                    .with_input_fact(0, f32::fact(shape).into())
                    .map_err(load)?;
            }
            cut_at(&mut model, cut, path)?;
            model.into_typed().map_err(load)?
        }
        ModelFormat::Nnef => {
            let mut model = tract_nnef::nnef()
                .with_onnx()
                .model_for_path(path)
                .map_err(load)?;
            cut_at(&mut model, cut, path)?;
            model
        }
    };
    if let Some(shape) = input {
        model = pin_input_shape(model, shape).map_err(|source| ModelFileError::Shape {
            path: path.to_path_buf(),
            source,
        })?;
    }
    model.into_decluttered().map_err(load)
}

/// Moves the graph's output to the node or tensor `cut`, if given (ONNX's inference graph and NNEF's typed one
/// alike).
fn cut_at<F, O>(
    model: &mut Graph<F, O>,
    cut: Option<&str>,
    path: &Path,
) -> Result<(), ModelFileError>
where
    F: Fact + Clone + 'static,
    O: std::fmt::Debug + std::fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    let Some(cut) = cut else {
        return Ok(());
    };
    let names: Vec<String> = model.node_names().map(str::to_string).collect();
    model
        .select_outputs_by_name([cut])
        .map_err(|_| ModelFileError::UnknownNode {
            path: path.to_path_buf(),
            name: cut.to_string(),
            nearby: nearby_names(cut, &names, 8).join(", "),
        })
}

/// The `k` names closest to `name` (edit distance on lower case, names containing it first), best first.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_file_name() {
        assert_eq!(
            ModelFormat::of(Path::new("a/b.ONNX")),
            Some(ModelFormat::Onnx)
        );
        assert_eq!(
            ModelFormat::of(Path::new("graph.nnef.tar")),
            Some(ModelFormat::Nnef)
        );
        assert_eq!(
            ModelFormat::of(Path::new("graph.nnef.tgz")),
            Some(ModelFormat::Nnef)
        );
        assert_eq!(ModelFormat::of(Path::new("weights.pth")), None);
    }

    #[test]
    fn nearby_names_prefer_containing_names() {
        let names: Vec<String> = ["features.6", "features.16", "classifier.0", "pool"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            nearby_names("features.1", &names, 2),
            ["features.16", "features.6"]
        );
    }
}

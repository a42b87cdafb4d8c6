//! The one error type of the bundle runtime, and the one way both binaries print an error.

use lookout_shared::bundle::BundleFileError;
use lookout_shared::preprocess::{PreprocessError, SpecError};

/// Everything that can go wrong loading a bundle or classifying with it. Each message says what is wrong and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bundle file could not be read or is not a valid bundle.
    #[error(transparent)]
    BundleFile(#[from] BundleFileError),
    /// The bundle's preprocessing recipe cannot be run.
    #[error("the bundle's preprocessing recipe is invalid: {0}; re-export the bundle")]
    Spec(#[from] SpecError),
    /// The bundle header contradicts itself or the model.
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    /// tract could not load or prepare the model inside the bundle.
    #[error("the model inside the bundle could not be loaded: {0}; re-export the bundle with this lookout version")]
    ModelLoad(String),
    /// The model's input shape differs from the bundle header's.
    #[error(
        "the model takes input {model} but the bundle header says {header:?}; \
         the bundle is inconsistent: re-export it"
    )]
    InputShapeMismatch {
        /// Input shape declared in the header.
        header: Vec<u32>,
        /// Input fact of the model, as tract prints it.
        model: String,
    },
    /// The model's output does not match the labels.
    #[error(
        "the model outputs {model} values but the bundle expects {expected} ({why}); \
         the bundle is inconsistent: re-export it"
    )]
    OutputSizeMismatch {
        /// Output shape of the model, as tract prints it.
        model: String,
        /// Number of values expected.
        expected: usize,
        /// Where the expectation comes from.
        why: String,
    },
    /// An input tensor of the wrong length was given to [`crate::Model::run_tensor`].
    #[error("input tensor has {got} values, the model takes {expected}")]
    InputLength {
        /// Values the model takes.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// tract failed while running the model.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The model produced a value that is not a probability (NaN or infinite).
    #[error(
        "the model produced a non-finite probability; the bundle is probably broken: re-export it"
    )]
    NonFiniteOutput,
    /// Preprocessing an image failed.
    #[error("preprocessing failed: {0}")]
    Preprocess(#[from] PreprocessError),
}

/// The one line both command-line tools print for a failed command: the error and its causes, joined by ": ".
///
/// Most errors here already say their cause in their own message (`cannot read x.jpg: No such file or
/// directory`), so that a library user printing only `{}` gets the whole story; a cause whose text the line
/// already holds is therefore not repeated (anyhow's `{:#}` would print it twice).
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says its cause in its own message, as most of Lookout's do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {}: {source}", path.display())]
    struct ReadError {
        path: std::path::PathBuf,
        source: std::io::Error,
    }

    fn missing_file() -> ReadError {
        ReadError {
            path: "cat.1.jpg".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory"),
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let error = anyhow::Error::new(missing_file()).context("listing the images");
        assert_eq!(
            error_line(error.as_ref()),
            "listing the images: cannot read cat.1.jpg: No such file or directory"
        );
        // What anyhow alone prints, for contrast: the reason twice.
        assert_eq!(
            format!("{error:#}")
                .matches("No such file or directory")
                .count(),
            2
        );
    }

    #[test]
    fn a_cause_not_in_the_message_is_appended() {
        let error = anyhow::Error::new(std::io::Error::other("disk full"))
            .context("writing out.json")
            .context("classify");
        assert_eq!(
            error_line(error.as_ref()),
            "classify: writing out.json: disk full"
        );
    }
}

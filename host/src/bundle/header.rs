//! The bundle header an export writes: labels, preprocessing, the backbone's identity, the head, the
//! measurements.

use lookout_shared::bundle::{
    Bundle, BundleHeader, ExportMetrics, HeadInfo, ModelFormat, OutputKind, Precision, UnknownInfo,
};

use super::{ExportError, ExportPrecision};
use crate::features::Pooling;
use crate::head::net::{Head, HeadKind};
use crate::head::run::{Run, RunConfig};

/// One line describing the head, e.g. `avgpool → Linear(1280,256) → ReLU → Dropout(0.5) → Linear(256,1) → sigmoid`.
pub fn describe_head(config: &RunConfig, head: &Head) -> String {
    let mut parts = Vec::new();
    if config.features.recipe.pooling == Pooling::Avg || head.pool == Pooling::Avg {
        parts.push("avgpool".to_string());
    }
    if head.input_shape.len() > 1 && head.pool == Pooling::None {
        parts.push("flatten".to_string());
    }
    for (i, layer) in head.layers.iter().enumerate() {
        parts.push(format!("Linear({},{})", layer.inputs, layer.outputs));
        if i + 1 < head.layers.len() {
            parts.push("ReLU".into());
            if config.head.dropout > 0.0 {
                parts.push(format!("Dropout({})", config.head.dropout));
            }
        }
    }
    parts.push(match config.output {
        OutputKind::Sigmoid => "sigmoid".into(),
        OutputKind::Softmax => "softmax".into(),
    });
    parts.join(" → ")
}

pub fn bundle_header(run: &Run, input_shape: &[usize], precision: ExportPrecision) -> BundleHeader {
    let config = &run.config;
    let parameters: usize = run
        .head
        .layers
        .iter()
        .map(|l| l.weight.len() + l.bias.len())
        .sum();
    BundleHeader {
        labels: config.classes.clone(),
        preprocess: config.features.recipe.preprocess.clone(),
        backbone: config.features.recipe.backbone.identity.clone(),
        head: HeadInfo {
            kind: match config.head.kind {
                HeadKind::Tutorial => "tutorial",
                HeadKind::Linear => "linear",
                HeadKind::Mlp => "mlp",
            }
            .into(),
            description: describe_head(config, &run.head),
            parameters: parameters as u64,
        },
        precision: precision.bundle_precision().unwrap_or(Precision::F32),
        input_shape: input_shape.iter().map(|&d| d as u32).collect(),
        output: config.output,
        threshold: config.threshold,
        metrics: None,
        lookout_version: env!("CARGO_PKG_VERSION").to_string(),
        model_format: ModelFormat::NnefTarGz,
        unknown: config.unknown.as_ref().map(|u| UnknownInfo {
            method: u.method.clone(),
            threshold: u.threshold,
            keep: u.keep,
            bank_size: u.bank_size as u32,
        }),
        background: config.background.map(|index| index as u32),
    }
}

/// Encodes the bundle with `metrics`, whose `file_size` is the size of the encoding itself (the size field is
/// a varint, so this settles in a couple of rounds).
pub fn encode_with_size(
    bundle: &mut Bundle,
    mut metrics: ExportMetrics,
) -> Result<Vec<u8>, ExportError> {
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bundle.header.metrics = Some(metrics.clone());
        bytes = bundle.to_bytes()?;
        if metrics.file_size == bytes.len() as u64 {
            break;
        }
        metrics.file_size = bytes.len() as u64;
    }
    Ok(bytes)
}

//! One shard file of a features cache: tensors `features` f32 `[n, ...feature_shape]`, `labels` u32 `[n]`,
//! `index` u32 `[n]` (position of each row's image in the split's file list), and the files of its range that
//! gave no features in the metadata.

use std::collections::HashMap;
use std::path::Path;

use lookout_shared::atomic::write_atomic;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::error::{FeaturesError, ShardError};
use crate::dataset::SkippedFile;

/// Shard metadata key holding the JSON list of files skipped inside that shard.
const SHARD_SKIPPED_KEY: &str = "lookout.skipped";

/// The rows of one shard, as written or read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardData {
    /// Row-major `[n, ...feature_shape]`.
    pub features: Vec<f32>,
    /// Class index per row.
    pub labels: Vec<u32>,
    /// Position of each row's image in the split's file list.
    pub index: Vec<u32>,
    /// Files of the shard's range that gave no features.
    pub skipped: Vec<SkippedFile>,
}

fn le_bytes_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_bytes_u32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes one shard atomically.
pub fn write_shard(
    path: &Path,
    feature_shape: &[usize],
    shard: &ShardData,
) -> Result<(), FeaturesError> {
    let n = shard.labels.len();
    let bad = |source: ShardError| FeaturesError::BadShard {
        path: path.to_path_buf(),
        source,
    };
    let dim: usize = feature_shape.iter().product();
    if shard.features.len() != n * dim || shard.index.len() != n {
        return Err(bad(ShardError::Inconsistent(format!(
            "inconsistent shard: {} labels, {} indices, {} values for rows of {dim}",
            n,
            shard.index.len(),
            shard.features.len()
        ))));
    }
    let features = le_bytes_f32(&shard.features);
    let labels = le_bytes_u32(&shard.labels);
    let index = le_bytes_u32(&shard.index);
    let mut shape = vec![n];
    shape.extend_from_slice(feature_shape);
    let tensors = vec![
        (
            "features",
            TensorView::new(Dtype::F32, shape, &features).map_err(|e| bad(e.into()))?,
        ),
        (
            "labels",
            TensorView::new(Dtype::U32, vec![n], &labels).map_err(|e| bad(e.into()))?,
        ),
        (
            "index",
            TensorView::new(Dtype::U32, vec![n], &index).map_err(|e| bad(e.into()))?,
        ),
    ];
    let skipped = serde_json::to_string(&shard.skipped).map_err(|e| bad(e.into()))?;
    let metadata = HashMap::from([(SHARD_SKIPPED_KEY.to_string(), skipped)]);
    let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(|e| bad(e.into()))?;
    Ok(write_atomic(path, &bytes)?)
}

/// Reads one shard and checks its tensors against the expected per-image shape.
pub fn read_shard(path: &Path, feature_shape: &[usize]) -> Result<ShardData, FeaturesError> {
    let bytes = std::fs::read(path).map_err(|e| FeaturesError::io(path, e))?;
    let bad = |source: ShardError| FeaturesError::BadShard {
        path: path.to_path_buf(),
        source,
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.into()))?;
    let skipped = match metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SHARD_SKIPPED_KEY))
    {
        Some(json) => serde_json::from_str(json).map_err(|e| bad(e.into()))?,
        None => Vec::new(),
    };
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.into()))?;
    let get = |name: &str, dtype: Dtype| {
        let t = tensors.tensor(name).map_err(|e| bad(e.into()))?;
        if t.dtype() != dtype {
            return Err(bad(ShardError::Inconsistent(format!(
                "`{name}` is {:?}, expected {dtype:?}",
                t.dtype()
            ))));
        }
        Ok(t)
    };
    let labels_t = get("labels", Dtype::U32)?;
    let n = labels_t.shape().first().copied().unwrap_or(0);
    let features_t = get("features", Dtype::F32)?;
    let index_t = get("index", Dtype::U32)?;
    let mut expected_shape = vec![n];
    expected_shape.extend_from_slice(feature_shape);
    if features_t.shape() != expected_shape.as_slice() || index_t.shape() != [n] {
        return Err(bad(ShardError::Inconsistent(format!(
            "`features` has shape {:?}, expected {expected_shape:?}",
            features_t.shape()
        ))));
    }
    let f32s = |b: &[u8]| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>()
    };
    let u32s = |b: &[u8]| {
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>()
    };
    Ok(ShardData {
        features: f32s(features_t.data()),
        labels: u32s(labels_t.data()),
        index: u32s(index_t.data()),
        skipped,
    })
}

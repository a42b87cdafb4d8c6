//! Global pooling of a backbone's feature map: at extraction (the cache then holds `[C]` rows) or as the head's
//! first step. One type, [`Pooling`], for both; its stable name is what `--pool` takes, what run.json and
//! the manifest record, and what the features-cache fingerprint hashes.

use serde::{Deserialize, Deserializer, Serialize};

/// Global pooling applied to a feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Keep the full feature map.
    #[default]
    None,
    /// Average over the spatial positions: `[C, H, W]` → `[C]`.
    Avg,
}

impl Pooling {
    /// The stable name: what `--pool` takes, what run files record, and what the features-cache fingerprint
    /// hashes (so renaming the variant cannot silently invalidate every cache).
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::None => "none",
            Pooling::Avg => "avg",
        }
    }
}

/// Reads a [`Pooling`] written either by name (`"avg"`) or as the `pooled: bool` that manifests and run
/// files held before the two pooling types were one.
pub fn deserialize_pooling<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Pooling, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Name(Pooling),
        Pooled(bool),
    }
    Ok(match Written::deserialize(deserializer)? {
        Written::Name(pooling) => pooling,
        Written::Pooled(true) => Pooling::Avg,
        Written::Pooled(false) => Pooling::None,
    })
}

/// Inputs of the first layer after `pool` on one input of `shape`; `None` when pooling does not apply.
pub fn pooled_len(shape: &[usize], pool: Pooling) -> Option<usize> {
    match pool {
        Pooling::None => Some(shape.iter().product()),
        Pooling::Avg => match shape {
            [c, _h, _w] => Some(*c),
            [c] => Some(*c),
            _ => None,
        },
    }
}

/// Mean over the spatial positions of one `[C, H, W]` map (or the vector itself when `shape` is `[C]`).
pub fn global_average_pool(sample: &[f32], shape: &[usize]) -> Vec<f32> {
    match shape {
        [_c, h, w] if h * w > 0 => {
            let area = h * w;
            sample
                .chunks_exact(area)
                .map(|plane| plane.iter().sum::<f32>() / area as f32)
                .collect()
        }
        _ => sample.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_names_hashed_by_the_cache_fingerprint_are_pinned() {
        // Changing these invalidates every features cache users have: only with a FORMAT_TAG bump.
        assert_eq!(Pooling::None.as_str(), "none");
        assert_eq!(Pooling::Avg.as_str(), "avg");
        assert_eq!(serde_json::to_string(&Pooling::Avg).unwrap(), "\"avg\"");
    }

    #[test]
    fn pooling_reads_the_old_boolean_and_the_name() {
        #[derive(Deserialize)]
        struct Record {
            #[serde(alias = "pooled", deserialize_with = "deserialize_pooling")]
            pooling: Pooling,
        }
        let read = |json: &str| serde_json::from_str::<Record>(json).unwrap().pooling;
        assert_eq!(read(r#"{"pooled": true}"#), Pooling::Avg);
        assert_eq!(read(r#"{"pooled": false}"#), Pooling::None);
        assert_eq!(read(r#"{"pooling": "avg"}"#), Pooling::Avg);
        assert!(serde_json::from_str::<Record>(r#"{"pooling": "max"}"#).is_err());
    }
}

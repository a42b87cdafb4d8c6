//! Labelled feature rows in memory: what a split of the cache loads into and what training, evaluation and
//! export's measurements read.

use super::pooling::{global_average_pool, pooled_len, Pooling};

/// Rows and labels that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowsError(String);

/// Feature vectors with their labels, row-major [n, dim].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRows {
    /// n × dim values.
    pub features: Vec<f32>,
    /// Label of each row, < number of classes.
    pub labels: Vec<u32>,
    /// Length of one row.
    pub dim: usize,
}

impl FeatureRows {
    /// A data set after checking that the sizes agree.
    pub fn new(features: Vec<f32>, labels: Vec<u32>, dim: usize) -> Result<Self, RowsError> {
        if dim == 0 || features.len() != labels.len() * dim {
            return Err(RowsError(format!(
                "{} feature values do not make {} rows of {dim}",
                features.len(),
                labels.len()
            )));
        }
        Ok(Self {
            features,
            labels,
            dim,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> FeatureRows {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        FeatureRows {
            features,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            dim: self.dim,
        }
    }

    /// Applies `pool` to every row, each of `shape`; returns the pooled set (or a clone for `Pooling::None`).
    pub fn pooled(self, shape: &[usize], pool: Pooling) -> Result<FeatureRows, RowsError> {
        let dim = pooled_len(shape, pool).ok_or_else(|| {
            RowsError(format!(
                "cannot average-pool features of shape {shape:?}: expected [C, H, W]"
            ))
        })?;
        if shape.iter().product::<usize>() != self.dim {
            return Err(RowsError(format!(
                "feature shape {shape:?} does not match rows of {}",
                self.dim
            )));
        }
        if dim == self.dim {
            return Ok(self);
        }
        let features = self
            .features
            .chunks_exact(self.dim)
            .flat_map(|row| global_average_pool(row, shape))
            .collect();
        Ok(FeatureRows {
            features,
            labels: self.labels,
            dim,
        })
    }

    /// Count of each label in 0..classes.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_averages_each_channel() {
        let data =
            FeatureRows::new(vec![1.0, 3.0, 5.0, 7.0, 0.0, 0.0, 2.0, 2.0], vec![0, 1], 4).unwrap();
        let pooled = data.pooled(&[2, 1, 2], Pooling::Avg).unwrap();
        assert_eq!(pooled.dim, 2);
        assert_eq!(pooled.features, vec![2.0, 6.0, 0.0, 2.0]);
    }
}

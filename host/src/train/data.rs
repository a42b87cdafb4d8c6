//! Labelled feature vectors in memory and the stratified validation split.

use super::rng::Rng;
use super::TrainError;
use crate::run::{global_average_pool, pooled_len, Pool};

/// Feature vectors with their labels, row-major [n, dim].
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// n × dim values.
    pub features: Vec<f32>,
    /// Label of each row, < number of classes.
    pub labels: Vec<u32>,
    /// Length of one row.
    pub dim: usize,
}

impl Dataset {
    /// A data set after checking that the sizes agree.
    pub fn new(features: Vec<f32>, labels: Vec<u32>, dim: usize) -> Result<Self, TrainError> {
        if dim == 0 || features.len() != labels.len() * dim {
            return Err(TrainError::Data(format!(
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
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        Dataset {
            features,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            dim: self.dim,
        }
    }

    /// Applies `pool` to every row, each of `shape`; returns the pooled set (or a clone for `Pool::None`).
    pub fn pooled(self, shape: &[usize], pool: Pool) -> Result<Dataset, TrainError> {
        let dim = pooled_len(shape, pool).ok_or_else(|| {
            TrainError::Data(format!(
                "cannot average-pool features of shape {shape:?}: expected [C, H, W]"
            ))
        })?;
        if shape.iter().product::<usize>() != self.dim {
            return Err(TrainError::Data(format!(
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
        Ok(Dataset {
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

/// Splits row indices into (train, valid), holding out `fraction` of each class (rounded, at least one
/// per class that has two or more rows when `fraction > 0`), chosen by `seed`.
pub fn stratified_split(labels: &[u32], fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for mut members in by_class {
        rng.shuffle(&mut members);
        let mut take = (members.len() as f32 * fraction).round() as usize;
        if fraction > 0.0 && take == 0 && members.len() >= 2 {
            take = 1;
        }
        take = take.min(members.len().saturating_sub(1));
        valid.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels: Vec<u32> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let (train, valid) = stratified_split(&labels, 0.1, 42);
        assert_eq!(train.len() + valid.len(), 100);
        assert_eq!(valid.iter().filter(|&&i| labels[i] == 0).count(), 8);
        assert_eq!(valid.iter().filter(|&&i| labels[i] == 1).count(), 2);
        assert!(valid.iter().all(|i| !train.contains(i)));
        assert_eq!(
            stratified_split(&labels, 0.1, 42),
            (train.clone(), valid.clone())
        );
        assert_ne!(stratified_split(&labels, 0.1, 43).1, valid);
        assert!(stratified_split(&labels, 0.0, 42).1.is_empty());
    }

    #[test]
    fn pooling_averages_each_channel() {
        let data =
            Dataset::new(vec![1.0, 3.0, 5.0, 7.0, 0.0, 0.0, 2.0, 2.0], vec![0, 1], 4).unwrap();
        let pooled = data.pooled(&[2, 1, 2], Pool::Avg).unwrap();
        assert_eq!(pooled.dim, 2);
        assert_eq!(pooled.features, vec![2.0, 6.0, 0.0, 2.0]);
    }
}

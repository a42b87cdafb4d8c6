//! The head's maths: a trained head ([`Head`]: optional pooling, then linear layers with ReLU in between),
//! evaluated in plain Rust (no candle), so that export can check the tract graph it builds against it and
//! `predict` needs no training framework; and how logits become scores.

use lookout_shared::bundle::OutputKind;
use serde::{Deserialize, Serialize};

use crate::features::pooling::{global_average_pool, pooled_len, Pooling};

/// A head that cannot run as described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The pooling does not apply to the input shape.
    #[error("cannot {}-pool an input of shape {shape:?}: expected [C, H, W] or [C]", pool.as_str())]
    Pooling {
        /// The pooling asked for.
        pool: Pooling,
        /// The input shape.
        shape: Vec<usize>,
    },
    /// There is no layer at all.
    #[error("the head has no layers")]
    NoLayers,
    /// A layer does not take what the previous one gives.
    #[error("{layer} takes {inputs} inputs, expected {expected}")]
    Inputs {
        /// The layer's name.
        layer: String,
        /// What it takes.
        inputs: usize,
        /// What the previous layer (or the pooled input) gives.
        expected: usize,
    },
    /// A layer's weights do not have its shape.
    #[error("{layer} has weights of the wrong size")]
    WeightSize {
        /// The layer's name.
        layer: String,
    },
    /// The number of layers does not fit the head's kind.
    #[error("{kind:?} head needs {expected} layers, {found} are named")]
    LayerCount {
        /// The kind.
        kind: HeadKind,
        /// Layers that kind has.
        expected: usize,
        /// Layers named.
        found: usize,
    },
}

/// The architecture of the classifier head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// The tutorial's: flatten → Linear(→hidden) → ReLU → Dropout → Linear(→outputs).
    Tutorial,
    /// Logistic regression: flatten → Linear(→outputs).
    Linear,
    /// Two hidden layers: Linear(→hidden) → ReLU → Dropout → Linear(→hidden) → ReLU → Dropout → Linear.
    Mlp,
}

impl HeadKind {
    /// Widths of the hidden layers for this kind.
    pub fn hidden_layers(self, hidden: usize) -> Vec<usize> {
        match self {
            HeadKind::Tutorial => vec![hidden],
            HeadKind::Linear => vec![],
            HeadKind::Mlp => vec![hidden, hidden],
        }
    }
}

/// One linear layer, PyTorch layout: `weight` is [outputs, inputs] row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Name prefix in head.safetensors (`fc1`, …).
    pub name: String,
    /// Number of inputs.
    pub inputs: usize,
    /// Number of outputs.
    pub outputs: usize,
    /// `[outputs, inputs]`, row-major.
    pub weight: Vec<f32>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
}

/// A trained head: optional pooling, then linear layers with ReLU in between.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Pooling of the input.
    pub pool: Pooling,
    /// Shape of one input as cached, e.g. [1280, 7, 7].
    pub input_shape: Vec<usize>,
    /// The linear layers.
    pub layers: Vec<Dense>,
}

impl Head {
    /// Checks that the layers chain and the pooling fits the input shape.
    pub fn validate(&self) -> Result<(), HeadError> {
        let mut expected =
            pooled_len(&self.input_shape, self.pool).ok_or_else(|| HeadError::Pooling {
                pool: self.pool,
                shape: self.input_shape.clone(),
            })?;
        if self.layers.is_empty() {
            return Err(HeadError::NoLayers);
        }
        for layer in &self.layers {
            if layer.inputs != expected {
                return Err(HeadError::Inputs {
                    layer: layer.name.clone(),
                    inputs: layer.inputs,
                    expected,
                });
            }
            if layer.weight.len() != layer.inputs * layer.outputs
                || layer.bias.len() != layer.outputs
            {
                return Err(HeadError::WeightSize {
                    layer: layer.name.clone(),
                });
            }
            expected = layer.outputs;
        }
        Ok(())
    }

    /// Number of f32 values of one input as cached.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Number of logits per input.
    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Logits of `n` inputs laid out back to back (`features.len() == n * input_len()`), in eval mode
    /// (no dropout), `n * outputs()` values.
    ///
    /// # Panics
    /// If `features.len()` is not a multiple of [`Head::input_len`] — check it first with untrusted data.
    pub fn forward(&self, features: &[f32]) -> Vec<f32> {
        let input_len = self.input_len();
        assert!(
            input_len > 0 && features.len().is_multiple_of(input_len),
            "Head::forward: {} values is not a whole number of inputs of {input_len}",
            features.len()
        );
        let mut out = Vec::with_capacity(features.len() / input_len * self.outputs());
        for sample in features.chunks_exact(input_len) {
            let mut x = match self.pool {
                Pooling::None => sample.to_vec(),
                Pooling::Avg => global_average_pool(sample, &self.input_shape),
            };
            for (i, layer) in self.layers.iter().enumerate() {
                x = dense_forward(layer, &x);
                if i + 1 < self.layers.len() {
                    x.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
            out.extend_from_slice(&x);
        }
        out
    }
}

impl Head {
    /// [`Head::forward`] over many inputs, split across rayon's threads (same results).
    ///
    /// # Panics
    /// As [`Head::forward`].
    pub fn forward_parallel(&self, features: &[f32]) -> Vec<f32> {
        use rayon::prelude::*;
        let input_len = self.input_len().max(1);
        // Chunks of 16 inputs: enough work per task for the tutorial head's 16M-weight first layer.
        features
            .par_chunks(16 * input_len)
            .flat_map_iter(|chunk| self.forward(chunk))
            .collect()
    }
}

fn dense_forward(layer: &Dense, x: &[f32]) -> Vec<f32> {
    layer
        .weight
        .chunks_exact(layer.inputs)
        .zip(&layer.bias)
        .map(|(row, b)| row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b)
        .collect()
}

/// Class scores for one input's logits (see `Run::scores`).
pub fn scores_from_logits(output: OutputKind, logits: &[f32]) -> Vec<f32> {
    match output {
        OutputKind::Sigmoid => {
            let p = sigmoid(logits.first().copied().unwrap_or(0.0));
            vec![1.0 - p, p]
        }
        OutputKind::Softmax => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            exps.iter().map(|e| e / sum).collect()
        }
    }
}

/// Predicted class for one input's logits (see `Run::predict`).
pub fn predict_from_logits(output: OutputKind, threshold: f32, logits: &[f32]) -> usize {
    match output {
        OutputKind::Sigmoid => {
            usize::from(sigmoid(logits.first().copied().unwrap_or(0.0)) >= threshold)
        }
        OutputKind::Softmax => argmax(logits),
    }
}

/// Index of the largest value (the first on ties; 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// The logistic function, stable for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_head(pool: Pooling) -> Head {
        Head {
            pool,
            input_shape: vec![2, 1, 2],
            layers: vec![
                Dense {
                    name: "fc1".into(),
                    inputs: if pool == Pooling::Avg { 2 } else { 4 },
                    outputs: 2,
                    weight: vec![],
                    bias: vec![0.5, -1.0],
                },
                Dense {
                    name: "fc2".into(),
                    inputs: 2,
                    outputs: 1,
                    weight: vec![1.0, -2.0],
                    bias: vec![0.25],
                },
            ],
        }
        .with_fc1(pool)
    }

    impl Head {
        fn with_fc1(mut self, pool: Pooling) -> Head {
            self.layers[0].weight = if pool == Pooling::Avg {
                vec![1.0, 2.0, -1.0, 1.0]
            } else {
                vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
            };
            self
        }
    }

    #[test]
    fn forward_matches_hand_computation() {
        // input [C=2, H=1, W=2] = [[1, 3], [2, -4]]
        let x = [1.0, 3.0, 2.0, -4.0];
        // avg pool → [2, -1]; fc1 = [[1,2],[-1,1]]·[2,-1] + [0.5,-1] = [0.5, -4]; relu → [0.5, 0];
        // fc2 = 0.5 − 0 + 0.25 = 0.75
        assert_eq!(tiny_head(Pooling::Avg).forward(&x), vec![0.75]);
        // flat: fc1 rows pick x0 + x3 = −3 and x1 + x2 = 5 → [−2.5, 4]; relu → [0, 4]; fc2 = −8 + 0.25
        assert_eq!(tiny_head(Pooling::None).forward(&x), vec![-7.75]);
        // two inputs back to back
        assert_eq!(
            tiny_head(Pooling::Avg).forward(&[x, x].concat()),
            vec![0.75, 0.75]
        );
    }

    #[test]
    fn thresholds_and_softmax() {
        assert_eq!(predict_from_logits(OutputKind::Sigmoid, 0.5, &[0.1]), 1);
        assert_eq!(predict_from_logits(OutputKind::Sigmoid, 0.5, &[-0.1]), 0);
        assert_eq!(predict_from_logits(OutputKind::Sigmoid, 0.9, &[1.0]), 0);
        assert_eq!(
            predict_from_logits(OutputKind::Softmax, 0.5, &[0.1, 3.0, -1.0]),
            1
        );
        let s = scores_from_logits(OutputKind::Softmax, &[1000.0, 1000.0]);
        assert!((s[0] - 0.5).abs() < 1e-6 && (s[1] - 0.5).abs() < 1e-6);
        assert!((sigmoid(-100.0)).abs() < 1e-30 && sigmoid(100.0) == 1.0);
    }

    #[test]
    fn invalid_heads_are_rejected() {
        let mut head = tiny_head(Pooling::Avg);
        head.layers[1].inputs = 3;
        assert!(head.validate().is_err());
        let mut head = tiny_head(Pooling::Avg);
        head.input_shape = vec![2, 2];
        assert!(head.validate().is_err());
    }
}

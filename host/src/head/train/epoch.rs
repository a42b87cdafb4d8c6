//! One epoch of training: mini-batch gradient steps over the shuffled rows, then the validation loss; and
//! the checks that refuse rows training cannot use.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer;

use super::adam::Adam;
use super::model::{self, CandleHead};
use super::{EpochRecord, Progress, TrainConfig, TrainError};
use crate::features::pooling::pooled_len;
use crate::features::FeatureRows;
use crate::head::net::argmax;
use crate::rng::Rng;

/// Refuses rows training cannot use, each with the reason in words.
pub(super) fn check_rows(
    data: &FeatureRows,
    input_shape: &[usize],
    classes: usize,
    config: &TrainConfig,
) -> Result<(), TrainError> {
    if classes < 2 {
        return Err(TrainError::Data(format!(
            "a classifier needs at least 2 classes, the features have {classes}"
        )));
    }
    if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(TrainError::Data(format!(
            "label {bad} is out of range for {classes} classes"
        )));
    }
    if let Some(missing) = data.class_counts(classes).iter().position(|&c| c == 0) {
        return Err(TrainError::Data(format!(
            "class #{missing} has no training examples"
        )));
    }
    if pooled_len(input_shape, config.pool).is_none() {
        return Err(TrainError::Data(format!(
            "--pool avg needs [C, H, W] features, these are {input_shape:?}"
        )));
    }
    Ok(())
}

/// What one epoch of gradient steps works with.
pub(super) struct Step<'a> {
    pub(super) model: &'a CandleHead,
    pub(super) optimizer: &'a mut Adam,
    pub(super) dropout_rng: &'a mut Rng,
    pub(super) batch_features: &'a mut Vec<f32>,
    pub(super) binary: bool,
    /// Augmented views of the rows (aligned with them); empty without augmentation.
    pub(super) views: &'a [FeatureRows],
    pub(super) view_rng: &'a mut Rng,
}

impl Step<'_> {
    /// One pass over the rows in `order`, in mini-batches, then the loss and accuracy on `valid`.
    pub(super) fn epoch(
        &mut self,
        epoch: usize,
        data: &FeatureRows,
        order: &[usize],
        valid: &FeatureRows,
        batch: usize,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<EpochRecord, TrainError> {
        let started = Instant::now();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for chunk in order.chunks(batch) {
            self.batch_features.clear();
            for &i in chunk {
                // Each row, each epoch: its clean features or one of its views, uniformly.
                let view = match self.views.len() {
                    0 => 0,
                    n => self.view_rng.below(n + 1),
                };
                let row = match view {
                    0 => data.row(i),
                    v => self.views[v - 1].row(i),
                };
                self.batch_features.extend_from_slice(row);
            }
            let labels: Vec<u32> = chunk.iter().map(|&i| data.labels[i]).collect();
            let x = Tensor::from_slice(self.batch_features, (chunk.len(), data.dim), &Device::Cpu)?;
            let logits = self.model.forward(&x, Some(self.dropout_rng))?;
            let loss = batch_loss(&logits, &labels, self.binary)?;
            self.optimizer.backward_step(&loss)?;
            let loss = loss.to_scalar::<f32>()?;
            loss_sum += loss as f64 * chunk.len() as f64;
            correct += count_correct(&logits, &labels, self.binary)?;
            progress(Progress::Batch { loss });
        }
        let (valid_loss, valid_accuracy) = if valid.is_empty() {
            (None, None)
        } else {
            let (l, a) = evaluate_rows(self.model, valid, self.binary)?;
            (Some(l), Some(a))
        };
        Ok(EpochRecord {
            epoch,
            train_loss: (loss_sum / order.len() as f64) as f32,
            train_accuracy: correct as f32 / order.len() as f32,
            valid_loss,
            valid_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn batch_loss(logits: &Tensor, labels: &[u32], binary: bool) -> candle_core::Result<Tensor> {
    let targets = model::targets_tensor(labels, binary)?;
    if binary {
        model::bce_with_logits(logits, &targets)
    } else {
        model::softmax_cross_entropy(logits, &targets)
    }
}

fn count_correct(logits: &Tensor, labels: &[u32], binary: bool) -> candle_core::Result<usize> {
    let logits: Vec<Vec<f32>> = logits.to_vec2()?;
    Ok(logits
        .iter()
        .zip(labels)
        .filter(|(row, &label)| {
            let predicted = if binary {
                usize::from(row[0] >= 0.0)
            } else {
                argmax(row)
            };
            predicted == label as usize
        })
        .count())
}

/// Mean loss and accuracy of the model on `rows`, dropout off.
pub(super) fn evaluate_rows(
    model: &CandleHead,
    rows: &FeatureRows,
    binary: bool,
) -> candle_core::Result<(f32, f32)> {
    const EVAL_BATCH: usize = 256;
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for start in (0..rows.len()).step_by(EVAL_BATCH) {
        let end = (start + EVAL_BATCH).min(rows.len());
        let x = Tensor::from_slice(
            &rows.features[start * rows.dim..end * rows.dim],
            (end - start, rows.dim),
            &Device::Cpu,
        )?;
        let logits = model.forward(&x, None)?.detach();
        let labels = &rows.labels[start..end];
        loss_sum +=
            batch_loss(&logits, labels, binary)?.to_scalar::<f32>()? as f64 * (end - start) as f64;
        correct += count_correct(&logits, labels, binary)?;
    }
    Ok((
        (loss_sum / rows.len() as f64) as f32,
        correct as f32 / rows.len() as f32,
    ))
}

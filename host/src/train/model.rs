//! The head as a candle graph for training: linear layers held in `Var`s so candle's autodiff gives the
//! gradients, dropout masks drawn from our seeded [`Rng`].

use candle_core::{DType, Device, Tensor, Var, D};

use super::rng::Rng;
use crate::run::Dense;

/// Trainable linear layers with ReLU and dropout between them.
pub(crate) struct CandleHead {
    layers: Vec<Layer>,
    dropout: f32,
}

struct Layer {
    name: String,
    inputs: usize,
    outputs: usize,
    weight: Var,
    bias: Var,
}

impl CandleHead {
    /// Layers of `widths` after `inputs`, initialised as PyTorch's `nn.Linear` does: kaiming-uniform with
    /// a = √5 for the weight, which is U(±1/√fan_in), and U(±1/√fan_in) for the bias.
    pub fn init(
        inputs: usize,
        widths: &[usize],
        dropout: f32,
        rng: &mut Rng,
    ) -> candle_core::Result<Self> {
        let mut layers = Vec::with_capacity(widths.len());
        let mut fan_in = inputs;
        for (i, &outputs) in widths.iter().enumerate() {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let weight: Vec<f32> = (0..outputs * fan_in)
                .map(|_| rng.uniform(-bound, bound))
                .collect();
            let bias: Vec<f32> = (0..outputs).map(|_| rng.uniform(-bound, bound)).collect();
            layers.push(Layer {
                name: format!("fc{}", i + 1),
                inputs: fan_in,
                outputs,
                weight: Var::from_vec(weight, (outputs, fan_in), &Device::Cpu)?,
                bias: Var::from_vec(bias, outputs, &Device::Cpu)?,
            });
            fan_in = outputs;
        }
        Ok(Self { layers, dropout })
    }

    /// All trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| [l.weight.clone(), l.bias.clone()])
            .collect()
    }

    /// Logits [batch, outputs]; with `dropout_rng` the hidden activations are dropped (training mode).
    pub fn forward(
        &self,
        x: &Tensor,
        mut dropout_rng: Option<&mut Rng>,
    ) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = x
                .matmul(&layer.weight.as_tensor().t()?)?
                .broadcast_add(layer.bias.as_tensor())?;
            if i < last {
                x = x.relu()?;
                if let Some(rng) = dropout_rng.as_deref_mut() {
                    x = self.apply_dropout(&x, rng)?;
                }
            }
        }
        Ok(x)
    }

    /// Inverted dropout, as PyTorch's: zero with probability p, scale the survivors by 1 / (1 − p).
    fn apply_dropout(&self, x: &Tensor, rng: &mut Rng) -> candle_core::Result<Tensor> {
        let p = self.dropout;
        if p <= 0.0 {
            return Ok(x.clone());
        }
        let keep_scale = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| if rng.next_f32() < p { 0.0 } else { keep_scale })
            .collect();
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
    }

    /// A copy of the current weights.
    pub fn snapshot(&self) -> candle_core::Result<Vec<Dense>> {
        self.layers
            .iter()
            .map(|l| {
                Ok(Dense {
                    name: l.name.clone(),
                    inputs: l.inputs,
                    outputs: l.outputs,
                    weight: l.weight.as_tensor().flatten_all()?.to_vec1()?,
                    bias: l.bias.as_tensor().to_vec1()?,
                })
            })
            .collect()
    }
}

/// Mean binary cross-entropy of logits [batch, 1] against 0/1 targets [batch], in the stable form
/// max(x, 0) − x·y + log(1 + e^−|x|) (candle-nn's version takes log(sigmoid), which overflows to −inf).
pub(crate) fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let x = logits.squeeze(D::Minus1)?;
    let softplus = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    (x.relu()? - (&x * targets)?)?.add(&softplus)?.mean_all()
}

/// Mean softmax cross-entropy of logits [batch, K] against class indices [batch].
pub(crate) fn softmax_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
) -> candle_core::Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, targets)
}

/// The targets tensor for a batch: f32 0/1 for the binary loss, u32 indices for softmax.
pub(crate) fn targets_tensor(labels: &[u32], binary: bool) -> candle_core::Result<Tensor> {
    if binary {
        let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        Tensor::from_vec(y, labels.len(), &Device::Cpu)
    } else {
        Tensor::from_vec(labels.to_vec(), labels.len(), &Device::Cpu)?.to_dtype(DType::U32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_bce_matches_the_textbook_formula_and_survives_large_logits() {
        let logits = Tensor::new(&[[2.0f32], [-1.0], [0.0]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[1.0f32, 0.0, 1.0], &Device::Cpu).unwrap();
        let got = bce_with_logits(&logits, &y)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        let want = -((s(2.0)).ln() + (1.0 - s(-1.0)).ln() + s(0.0).ln()) / 3.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let big = Tensor::new(&[[200.0f32]], &Device::Cpu).unwrap();
        let zero = Tensor::new(&[0.0f32], &Device::Cpu).unwrap();
        let loss = bce_with_logits(&big, &zero)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss - 200.0).abs() < 1e-3, "{loss}");
    }

    #[test]
    fn init_bounds_follow_pytorch_and_dropout_keeps_the_mean() {
        let mut rng = Rng::new(3);
        let head = CandleHead::init(400, &[50, 1], 0.5, &mut rng).unwrap();
        let w = head.snapshot().unwrap();
        let bound = 1.0 / 20.0;
        assert!(w[0]
            .weight
            .iter()
            .chain(&w[0].bias)
            .all(|v| v.abs() <= bound));
        assert!(w[0].weight.iter().any(|v| v.abs() > 0.9 * bound));
        let ones = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
        let dropped = head
            .apply_dropout(&ones, &mut rng)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let zeros = dropped.iter().filter(|&&v| v == 0.0).count();
        // 10,000 Bernoulli(0.5): sd 50, so 4,700..5,300 is 6 sd.
        assert!((4_700..5_300).contains(&zeros), "{zeros}");
        assert!(dropped.iter().all(|&v| v == 0.0 || v == 2.0));
    }
}

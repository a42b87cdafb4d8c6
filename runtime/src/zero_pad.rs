//! Zero padding by rows.
//!
//! tract runs a convolution through im2col on an input it has padded first, with its `Pad` operation:
//! EfficientNet-Lite0's stem pads the 3 × 224 × 224 frame to 225 × 225 (TensorFlow's "same" padding for a
//! stride of 2 puts the extra row and column after). tract-core 0.23.9's `Pad` fills a new array with the
//! padding value and assigns the input into a slice of it through ndarray's general N-dimensional iteration:
//! 0.13–0.26 ms a frame on one x86 thread for 600 kB. [`ZeroPad`] writes the same tensor as zeros and one
//! copy per input row.

use tract_core::internal::*;
use tract_core::ops::array::{Pad, PadMode};

/// `LOOKOUT_ZERO_PAD=off` leaves zero padding to tract's `Pad`: the baseline of the side-by-side figures
/// (`runtime/examples/plan_ab.rs`), and a way out should the rewrite misbehave on a model.
pub const ZERO_PAD_SWITCH: &str = "LOOKOUT_ZERO_PAD";

/// Replaces every `Pad` of an f32 tensor of known shape by zeros with a [`ZeroPad`], unless [`ZERO_PAD_SWITCH`]
/// is `off`. Returns how many were replaced.
pub fn rewrite_zero_pads(model: &mut TypedModel) -> TractResult<usize> {
    if crate::plan::switched_off(ZERO_PAD_SWITCH) {
        return Ok(0);
    }
    crate::plan::rewrite_each(model, zero_pad_patch)
}

/// The patch replacing node `id` by a [`ZeroPad`], if it pads an f32 tensor of known shape with zeros.
fn zero_pad_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let Some(pad) = node.op_as::<Pad>() else {
        return Ok(None);
    };
    let PadMode::Constant(value) = &pad.mode else {
        return Ok(None);
    };
    // Positive zero: the bits `Tensor::zero` writes.
    let zero = value.len() == 1
        && value
            .cast_to_scalar::<f32>()
            .is_ok_and(|v| v.to_bits() == 0);
    let input = model.outlet_fact(node.inputs[0])?;
    if !zero || input.datum_type != DatumType::F32 || input.shape.as_concrete().is_none() {
        return Ok(None);
    }
    if pad.pads.len() != input.rank() {
        return Ok(None);
    }
    TypedModelPatch::replace_single_op(
        model,
        node,
        &node.inputs,
        ZeroPad {
            pads: pad.pads.clone(),
            fallback: pad.clone(),
        },
    )
    .map(Some)
}

/// Pads an f32 tensor with zeros: `pads[axis]` = (values before, values after) on each axis, as tract's `Pad`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZeroPad {
    pads: Vec<(usize, usize)>,
    /// The operation it replaced: pads what this one's precondition (f32, laid out naturally) does not hold for.
    fallback: Pad,
}

impl ZeroPad {
    /// `input` (f32, laid out naturally, `pads.len()` axes) padded: each output row written once, as zeros
    /// where it is padding, as zeros around a copy of an input row where it is not.
    fn pad(&self, input: &Tensor) -> TractResult<Tensor> {
        let in_shape = input.shape();
        ensure!(
            in_shape.len() == self.pads.len(),
            "{} pads for a tensor of {} axes",
            self.pads.len(),
            in_shape.len()
        );
        let Some((&(before, after), leading_pads)) = self.pads.split_last() else {
            // A scalar: nothing to pad.
            return Ok(input.clone());
        };
        let out_shape: TVec<usize> = in_shape
            .iter()
            .zip(&self.pads)
            .map(|(d, (before, after))| d + before + after)
            .collect();
        let row = in_shape[in_shape.len() - 1];
        let out_row = row + before + after;
        // SAFETY: f32 has no invalid bit patterns, and every value is written below: the output's rows
        // partition it, and each is written whole.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        let input_view = input.view();
        let mut source = input_view.as_slice::<f32>()?.chunks_exact(row.max(1));
        let mut output_view = output.view_mut();
        let target = output_view.as_slice_mut::<f32>()?;
        if out_row == 0 {
            return Ok(output);
        }
        let leading = &out_shape[..out_shape.len() - 1];
        // Each output row's position on the leading axes, counted like an odometer; it holds an input row when
        // that position is past the padding before and short of the padding after on every axis. Input rows come
        // in order, as the output's do.
        let mut index = vec![0usize; leading.len()];
        for out in target.chunks_exact_mut(out_row) {
            let inside = index
                .iter()
                .zip(leading_pads)
                .zip(leading)
                .all(|((&i, &(before, after)), &d)| i >= before && i < d - after);
            if inside && row > 0 {
                let values = source
                    .next()
                    .context("fewer input rows than the padding implies")?;
                out[..before].fill(0.0);
                out[before..before + row].copy_from_slice(values);
                out[before + row..].fill(0.0);
            } else {
                out.fill(0.0);
            }
            for axis in (0..leading.len()).rev() {
                index[axis] += 1;
                if index[axis] < leading[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(output)
    }
}

impl Op for ZeroPad {
    fn name(&self) -> StaticName {
        "ZeroPad".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("pads {:?}", self.pads)])
    }

    op_as_typed_op!();
}

impl EvalOp for ZeroPad {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let natural = inputs[0].len() == inputs[0].shape().iter().product::<usize>()
            && inputs[0].strides() == &*Tensor::natural_strides(inputs[0].shape());
        if inputs[0].datum_type() != DatumType::F32 || !natural {
            return self.fallback.eval(ctx, inputs);
        }
        Ok(tvec!(self.pad(&inputs[0])?.into_tvalue()))
    }
}

impl TypedOp for ZeroPad {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut fact = inputs[0].without_value();
        ensure!(
            self.pads.len() == fact.rank(),
            "pads {:?} for a tensor of rank {}",
            self.pads,
            fact.rank()
        );
        for (axis, (before, after)) in self.pads.iter().enumerate() {
            fact.shape
                .set(axis, fact.shape[axis].clone() + *before + *after);
        }
        Ok(tvec!(fact))
    }

    as_op!();
}

//! How a model becomes a plan on the CPU: tract's optimiser, then the rewrites of this crate.
//!
//! Both sides prepare models through here ([`optimize`]; the host's feature extractor through [`CpuRuntime`],
//! tract's `Runtime` trait), so a backbone runs the same plan in `lookout extract` as in its bundle on the Pi.
//!
//! Six rewrites, each keeping every value as tract's plan computes it:
//! - [`ClampedDepthwise`] fuses the clip after a depthwise convolution (a ReLU6) into the convolution's kernel,
//!   where that kernel is this crate's (see its documentation).
//! - [`RowBroadcast`] is for the element-wise operations tract 0.23.9 leaves on its generic broadcasting path.
//! - [`crate::pack::KInnerPack`] packs channel-last activations for matrix products by a vector transpose, panel
//!   by panel, where tract moves them value by value (x86_64 with AVX-512F; see `crate::pack`).
//! - [`crate::reshape_fusion`] fuses a clip (or any chain of operations by constants) that follows a matrix
//!   product through a reshape into the product's kernel, as tract does when no reshape is between them (a
//!   convolution run through im2col: EfficientNet-Lite0's stem).
//! - [`crate::zero_pad::ZeroPad`] pads with zeros a row at a time where tract's `Pad` goes value by value.
//! - [`crate::im2col::VectorIm2col`] packs the im2col panels of a convolution (a stem) a vector a step where
//!   tract gathers them value by value (x86_64 with AVX-512F; see `crate::im2col`).
//!
//! The squeeze-and-excitation blocks of MobileNetV3 (and most mobile backbones) multiply an `H × W × C`
//! activation by one scale per channel. tract's optimiser turns such a product into
//! its fast `OptBinUnicast` only when `C` is a multiple of `vector_size()`, a width it counts in bytes (64 with
//! AVX-512, 32 with AVX2, 16 on ARM) but compares with a number of elements: 240, 144, 120 or 672 channels
//! fail it, and the product then runs through ndarray's general broadcast, about 3 ns a value (MobileNetV3-Small:
//! 0.59 ms of a 5.8 ms plan for seven such products). [`RowBroadcast`] does the same arithmetic in one pass
//! over rows of `C`, in place, the operand order and the operation kept, so the results are the same to the
//! bit.

use std::borrow::Cow;

use tract_core::internal::*;
use tract_core::ops::binary::{OptBinChain, TypedBinOp};
use tract_core::runtime::{RunOptions, Runnable, Runtime};
use tract_linalg::BinOp;

/// `LOOKOUT_PLAN_REWRITES=off` leaves the plan as tract's optimiser makes it: the baseline of the side-by-side
/// figures, and a way out should a rewrite misbehave on a model.
pub const REWRITES_SWITCH: &str = "LOOKOUT_PLAN_REWRITES";

/// Whether the environment variable `switch` (one of this crate's `LOOKOUT_*` switches) is `off`.
pub(crate) fn switched_off(switch: &str) -> bool {
    std::env::var(switch).is_ok_and(|v| v == "off")
}

/// tract's optimiser, then this crate's rewrites (see the module's documentation), unless [`REWRITES_SWITCH`] is
/// `off`.
pub fn optimize(model: TypedModel) -> TractResult<TypedModel> {
    // Ours must be registered before tract resolves its kernels, which it does as it optimises.
    crate::kernels::ensure_linked();
    let mut model = model.into_optimized()?;
    if switched_off(REWRITES_SWITCH) {
        return Ok(model);
    }
    rewrite_row_broadcasts(&mut model)?;
    if crate::kernels::depthwise_c_takes_clamp() {
        fuse_depthwise_clamps(&mut model)?;
    }
    crate::pack::rewrite_k_inner_packs(&mut model)?;
    crate::reshape_fusion::fuse_scalar_chains_through_reshapes(&mut model)?;
    crate::zero_pad::rewrite_zero_pads(&mut model)?;
    crate::im2col::rewrite_lazy_im2cols(&mut model)?;
    Ok(model)
}

/// tract's CPU runtime with [`optimize`] as its preparation: what the host's feature extractor runs on
/// when no GPU is chosen.
#[derive(Debug)]
pub struct CpuRuntime;

impl Runtime for CpuRuntime {
    fn name(&self) -> StaticName {
        Cow::Borrowed("cpu")
    }

    fn prepare_with_options(
        &self,
        model: TypedModel,
        options: &RunOptions,
    ) -> TractResult<Box<dyn Runnable>> {
        Ok(Box::new(TypedSimplePlan::new_with_options(
            optimize(model)?,
            options,
        )?))
    }

    fn check(&self) -> TractResult<()> {
        Ok(())
    }
}

/// Replaces every f32 element-wise operation left on tract's generic path whose smaller operand repeats
/// over the larger one's leading axes (`a: [.., H, W, C]`, `b: [1, .., 1, C]`) by a [`RowBroadcast`].
/// Returns how many were replaced.
pub fn rewrite_row_broadcasts(model: &mut TypedModel) -> TractResult<usize> {
    rewrite_each(model, row_broadcast_patch)
}

/// Applies `patch_for`'s patch for every node of `model` (in evaluation order) it has one for, then drops what
/// the patches left unused. Returns how many were applied.
pub(crate) fn rewrite_each(
    model: &mut TypedModel,
    patch_for: fn(&TypedModel, usize) -> TractResult<Option<TypedModelPatch>>,
) -> TractResult<usize> {
    let mut applied = 0;
    // A patch adds nodes and reroutes the replaced ones' consumers, never renumbers: the ids of the first
    // evaluation order stay valid as patches are applied.
    for id in model.eval_order()? {
        if let Some(patch) = patch_for(model, id)? {
            patch.apply(model)?;
            applied += 1;
        }
    }
    if applied > 0 {
        model.compact()?;
    }
    Ok(applied)
}

/// The patch replacing node `id` by a [`RowBroadcast`], if it is a case for one.
fn row_broadcast_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    let Some(linalg_op) = bin.0.as_linalg_binop() else {
        return Ok(None);
    };
    let facts = model.node_input_facts(id)?;
    let output = &node.outputs[0].fact;
    let [a, b] = facts[..] else {
        return Ok(None);
    };
    if [a.datum_type, b.datum_type, output.datum_type] != [DatumType::F32; 3] {
        return Ok(None);
    }
    let (Some(a_shape), Some(b_shape)) = (a.shape.as_concrete(), b.shape.as_concrete()) else {
        return Ok(None);
    };
    // The operand the output has the shape of is the one rewritten in place; the operation is flipped when
    // it is the second (b - a for a - b), which keeps every value's arithmetic as it was.
    let (big, small, op, swapped) = if output.shape.as_concrete() == Some(a_shape) {
        (a_shape, b_shape, linalg_op, false)
    } else if output.shape.as_concrete() == Some(b_shape) {
        (b_shape, a_shape, linalg_op.flip(), true)
    } else {
        return Ok(None);
    };
    let Some(period) = row_period(big, small) else {
        return Ok(None);
    };
    // Products of one row, or of nothing, are not the case this is for.
    if period == 0 || period == big.iter().product::<usize>() {
        return Ok(None);
    }
    let mut inputs = node.inputs.clone();
    if swapped {
        inputs.swap(0, 1);
    }
    TypedModelPatch::replace_single_op(
        model,
        node,
        &inputs,
        RowBroadcast {
            op,
            period,
            fallback: bin.clone(),
            swapped,
        },
    )
    .map(Some)
}

/// The length of the rows `small` repeats over `big` with (the volume of its trailing axes), when `small` is
/// 1 on every leading axis and equal to `big` on every trailing one; `None` otherwise.
fn row_period(big: &[usize], small: &[usize]) -> Option<usize> {
    if big.len() != small.len() {
        return None;
    }
    let leading = small.iter().take_while(|&&d| d == 1).count();
    let trailing_equal = big[leading..] == small[leading..];
    trailing_equal.then(|| small[leading..].iter().product())
}

/// `a[r × period + j] = op(a[r × period + j], b[j])` over every row `r` of `a`, in place: an element-wise
/// operation whose second operand repeats over the first one's leading axes (a per-channel scale on a
/// channel-last activation). See the module's documentation for why.
#[derive(Debug, Clone)]
pub struct RowBroadcast {
    op: BinOp,
    period: usize,
    /// The operation it replaced: evaluates tensors this one's precondition does not hold for.
    fallback: TypedBinOp,
    /// Whether the operands were swapped from the replaced operation's order (its `fallback` is then given
    /// them swapped back).
    swapped: bool,
}

impl PartialEq for RowBroadcast {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.period == other.period && self.swapped == other.swapped
    }
}
impl Eq for RowBroadcast {}

impl Op for RowBroadcast {
    fn name(&self) -> StaticName {
        format!("RowBroadcast({:?})", self.op).into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowBroadcast {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        let natural = |t: &Tensor| {
            t.len() == t.shape().iter().product::<usize>()
                && t.strides() == &*Tensor::natural_strides(t.shape())
        };
        if !natural(&a) || b.len() != self.period || a.len() % self.period != 0 {
            let inputs = if self.swapped {
                tvec!(b, a)
            } else {
                tvec!(a, b)
            };
            return self.fallback.eval(ctx, inputs);
        }
        let mut a = a.into_tensor();
        {
            let b_view = b.view();
            let b = b_view.as_slice::<f32>()?;
            let mut a_view = a.view_mut();
            let a = a_view.as_slice_mut::<f32>()?;
            // The operations tract's generic f32 path applies (`f32::min`/`max`, not comparisons), so the values
            // are the same to the bit.
            macro_rules! rows {
                (|$x:ident, $y:ident| $value:expr) => {
                    for row in a.chunks_exact_mut(self.period) {
                        for ($x, &$y) in row.iter_mut().zip(b) {
                            *$x = $value;
                        }
                    }
                };
            }
            match self.op {
                BinOp::Mul => rows!(|x, y| *x * y),
                BinOp::Add => rows!(|x, y| *x + y),
                BinOp::Sub => rows!(|x, y| *x - y),
                BinOp::SubF => rows!(|x, y| y - *x),
                BinOp::Min => rows!(|x, y| x.min(y)),
                BinOp::Max => rows!(|x, y| x.max(y)),
            }
        }
        Ok(tvec!(a.into_tvalue()))
    }
}

impl TypedOp for RowBroadcast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        Ok(tvec!((Cost::FMA(DatumType::F32), inputs[0].shape.volume())))
    }

    as_op!();
}

/// The node that alone consumes node `id`'s only output, as its first input, if there is one (and that output is
/// not one of the model's): a node a rewrite may fuse into node `id`.
pub(crate) fn sole_consumer(model: &TypedModel, id: usize) -> Option<&TypedNode> {
    let node = model.node(id);
    if node.outputs.len() != 1 || model.outputs.contains(&OutletId::new(id, 0)) {
        return None;
    }
    let [consumer] = &node.outputs[0].successors[..] else {
        return None;
    };
    (consumer.slot == 0).then(|| model.node(consumer.node))
}

/// The value of `outlet` if it is a constant of one f32 (a clip's bound, an operand a kernel applies as a scalar).
pub(crate) fn f32_constant(model: &TypedModel, outlet: OutletId) -> Option<f32> {
    let konst = model.outlet_fact(outlet).ok()?.konst.as_ref()?;
    if konst.datum_type() != DatumType::F32 || konst.len() != 1 {
        return None;
    }
    konst.cast_to_scalar::<f32>().ok()
}

/// Fuses every clip (`max` then `min` by constants: a ReLU6) that is the only consumer of a depthwise convolution
/// into it, as a [`ClampedDepthwise`]. Returns how many were fused.
pub fn fuse_depthwise_clamps(model: &mut TypedModel) -> TractResult<usize> {
    rewrite_each(model, clamped_depthwise_patch)
}

/// The patch fusing node `id` (a depthwise convolution) with the clip after it, if it is followed by one alone.
fn clamped_depthwise_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    // tract-core does not export its `DepthWise` type; its name is what identifies it.
    if node.op.name() != "DepthWiseConv" {
        return Ok(None);
    }
    let Some(clip) = sole_consumer(model, id) else {
        return Ok(None);
    };
    let Some(chain) = clip.op_as::<OptBinChain>() else {
        return Ok(None);
    };
    let ops: Vec<BinOp> = chain.steps.iter().map(|s| s.linalg_op).collect();
    if ops != [BinOp::Max, BinOp::Min] || clip.inputs.len() != 3 {
        return Ok(None);
    }
    let (Some(low), Some(high)) = (
        f32_constant(model, clip.inputs[1]),
        f32_constant(model, clip.inputs[2]),
    ) else {
        return Ok(None);
    };
    if model.outlet_fact(OutletId::new(id, 0))?.datum_type != DatumType::F32 {
        return Ok(None);
    }
    let mut patch = TypedModelPatch::default();
    let inputs = patch.taps(model, &node.inputs)?;
    let fused = patch.wire_node(
        &node.name,
        ClampedDepthwise {
            depthwise: node.op.clone(),
            low,
            high,
        },
        &inputs,
    )?;
    patch.shunt_outside(model, OutletId::new(clip.id, 0), fused[0])?;
    Ok(Some(patch))
}

/// A depthwise convolution (tract's own node) whose outputs are clamped to `low..=high` as they are stored,
/// instead of by a pass of their own after it: this crate's x86_64 `DepthwiseC` kernel clamps each vector
/// before its store when the node offers the bounds (`kernels::fused_clamp`). EfficientNet-Lite0 clips each of its
/// 16 depthwise convolutions (ReLU6); each pass read and wrote the whole activation again (about 1 ms of its plan
/// on one x86 thread). Values the kernel did not clamp (another thread's, another kernel's) are clamped after;
/// either way each value is `min(max(x, low), high)`, as the clip computed it.
#[derive(Debug, Clone)]
pub struct ClampedDepthwise {
    depthwise: Box<dyn TypedOp>,
    low: f32,
    high: f32,
}

impl PartialEq for ClampedDepthwise {
    fn eq(&self, other: &Self) -> bool {
        self.depthwise == other.depthwise
            && self.low.to_bits() == other.low.to_bits()
            && self.high.to_bits() == other.high.to_bits()
    }
}
impl Eq for ClampedDepthwise {}

impl Op for ClampedDepthwise {
    fn name(&self) -> StaticName {
        "DepthWiseConv+Clamp".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("clamped to {}..={}", self.low, self.high)])
    }

    op_as_typed_op!();
}

impl EvalOp for ClampedDepthwise {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (outputs, clamped) = crate::kernels::fused_clamp::offer((self.low, self.high), || {
            self.depthwise.eval(ctx, inputs)
        });
        let mut outputs = outputs?;
        ensure!(outputs.len() == 1, "a depthwise convolution has one output");
        if clamped != outputs[0].len() {
            let mut output = outputs.remove(0).into_tensor();
            {
                let mut view = output.view_mut();
                for x in view.as_slice_mut::<f32>()? {
                    *x = x.max(self.low).min(self.high);
                }
            }
            outputs.push(output.into_tvalue());
        }
        Ok(outputs)
    }
}

impl TypedOp for ClampedDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.depthwise.output_facts(inputs)
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        self.depthwise.cost(inputs)
    }

    as_op!();
}

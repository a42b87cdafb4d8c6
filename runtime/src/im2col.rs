//! The panels of a convolution run through im2col, packed a vector a step where their positions are evenly
//! spaced.
//!
//! tract runs a convolution that is neither pointwise nor depthwise (a backbone's stem: 3 channels, 3 × 3 taps,
//! stride 2) as a matrix product whose activation operand is made on demand, panel by panel, by its
//! `LazyIm2col` node: for each of the panel's 16 output positions and each of its k taps, one value looked up
//! through a table of offsets and written on its own. In a sampling profile on one x86 thread that gathering was
//! 1.9 % of EfficientNet-Lite0's time (its stem: 27 taps × 12544 positions) and 3.1 % of MobileNetV3-Small's,
//! about a tenth of its backbone's (docs/performance.md). The 16 positions of a panel that lie along one output row are evenly spaced in the input (the
//! stride apart), so each step of k is one vector load (stride 1) or two and a permutation (stride 2):
//! [`VectorIm2col`] packs those panels so (`crate::kernels::im2col_panel_f32`, x86_64 with AVX-512F) and hands
//! every other panel (one that wraps to the next row, a short last one) to tract's own.
//!
//! tract-core 0.23.9 keeps `LazyIm2col`'s type in a private module, so its table of offsets cannot be read
//! from the op. The rewrite reads it off the op's output instead: it runs the op once, as it rewrites, on an
//! input whose every value is its own index, and the panels tract packs from it give each value's source. A
//! panel is packed by vector only where its sources are exactly `base + k_offsets[kk] + x × step` for every
//! step `kk` and position `x` (the offsets of k shared by every such panel), which the rewrite checks value
//! by value; anything else stays tract's.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tract_core::internal::*;
use tract_linalg::mmm::{MMMInputFormat, MMMInputValue, PackedMatrixStorage};
use tract_linalg::pack::PackedFormat;

use crate::kernels::K_INNER_PANEL as R;
use crate::pack::sole_packer;

/// `LOOKOUT_VECTOR_IM2COL=off` leaves every im2col panel to tract: the baseline of the side-by-side figures
/// (`runtime/examples/plan_ab.rs`), and a way out should the rewrite misbehave on a model.
pub const VECTOR_IM2COL_SWITCH: &str = "LOOKOUT_VECTOR_IM2COL";

/// The largest input whose indices f32 numbers exactly (2^24): the probe numbers the values of the input.
const EXACT_INDICES: usize = 1 << 24;

/// Wraps every `LazyIm2col` node of an f32 input, with 16-wide panels, in a [`VectorIm2col`] where some of its
/// panels can be packed by vector, unless [`VECTOR_IM2COL_SWITCH`] is `off` or this machine has no vector
/// packing (see the module's documentation). Returns how many were wrapped.
pub fn rewrite_lazy_im2cols(model: &mut TypedModel) -> TractResult<usize> {
    if !crate::kernels::packs_k_inner_f32() || crate::plan::switched_off(VECTOR_IM2COL_SWITCH) {
        return Ok(0);
    }
    crate::plan::rewrite_each(model, vector_im2col_patch)
}

/// The patch wrapping node `id` in a [`VectorIm2col`], if it is tract's lazy im2col and some of its panels are
/// evenly spaced.
fn vector_im2col_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    // tract-core keeps `LazyIm2Col`'s type to itself: its name identifies it.
    if node.op.name() != "LazyIm2col" || node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Ok(None);
    }
    let input = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = input.shape.as_concrete() else {
        return Ok(None);
    };
    let len: usize = shape.iter().product();
    if input.datum_type != DatumType::F32 || len == 0 || len > EXACT_INDICES {
        return Ok(None);
    }
    // 16-wide f32 panels, as the kernel writes them.
    let sixteen_wide = sole_packer(model.outlet_fact(OutletId::new(id, 0))?)
        .and_then(|packer| packer.downcast_ref::<PackedFormat>())
        .is_some_and(|format| format.dt == DatumType::F32 && format.r == R);
    if !sixteen_wide {
        return Ok(None);
    }
    let Some(geometry) = Im2colGeometry::probe(&*node.op, shape)? else {
        return Ok(None);
    };
    TypedModelPatch::replace_single_op(
        model,
        node,
        &node.inputs,
        VectorIm2col {
            lazy: node.op.clone(),
            geometry: Arc::new(geometry),
        },
    )
    .map(Some)
}

/// Where the panels of one im2col read their values, as far as they are evenly spaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Im2colGeometry {
    /// The input's number of values.
    input_len: usize,
    /// Each step of k's offset in the input from a panel's first value.
    k_offsets: Vec<usize>,
    /// Each panel's first value and the spacing of its positions, where it is packed by vector.
    panels: Vec<Option<PanelStart>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PanelStart {
    base: usize,
    step: usize,
}

impl Im2colGeometry {
    /// Runs `lazy` (tract's `LazyIm2col`) on an input of `shape` whose values are their own indices and reads
    /// each full panel's sources off its output: the geometry, if at least one panel is evenly spaced.
    fn probe(lazy: &dyn TypedOp, shape: &[usize]) -> TractResult<Option<Im2colGeometry>> {
        let input_len: usize = shape.iter().product();
        let indices: Vec<f32> = (0..input_len).map(|i| i as f32).collect();
        let probe = Tensor::from_shape(shape, &indices)?;
        let outputs = lazy.eval(&EvalContext::out_of_plan(), tvec![probe.into_tvalue()])?;
        let Some(storage) = sole_panels(&outputs) else {
            return Ok(None);
        };
        let value = &storage.values()[0];
        let (k, mn) = (value.k(), value.mn());
        let Some(layout) = value.scratch_panel_buffer_layout() else {
            return Ok(None);
        };
        if k == 0 || value.format().r() != R || layout.size() < k * R * size_of::<f32>() {
            return Ok(None);
        }
        let mut buffer = vec![0f32; layout.size().div_ceil(size_of::<f32>())];
        let mut k_offsets: Option<Vec<usize>> = None;
        let mut panels = vec![None; mn.div_ceil(R)];
        for (i, start) in panels.iter_mut().enumerate().take(mn / R) {
            let bytes = value.panel_bytes(i, Some(buffer.as_mut_ptr() as *mut u8))?;
            // SAFETY: tract returns either the buffer it was given or a panel of its own of the same layout,
            // both at least `k * R` f32 (checked above).
            let sources = unsafe { std::slice::from_raw_parts(bytes as *const f32, k * R) };
            *start = even_panel(sources, k, &mut k_offsets);
        }
        match k_offsets {
            Some(k_offsets) if panels.iter().any(Option::is_some) => Ok(Some(Im2colGeometry {
                input_len,
                k_offsets,
                panels,
            })),
            _ => Ok(None),
        }
    }
}

/// A probed panel's first value and spacing, if each of its `k × R` sources (step `kk` of position `x` at
/// `kk * R + x`) is `base + k_offsets[kk] + x × step` with a step of 1 or 2 and the offsets of k the ones
/// the earlier even panels had (`k_offsets`, set by the first).
fn even_panel(sources: &[f32], k: usize, k_offsets: &mut Option<Vec<usize>>) -> Option<PanelStart> {
    let index = |value: f32| -> Option<usize> {
        (value >= 0.0 && value.fract() == 0.0 && value < EXACT_INDICES as f32)
            .then_some(value as usize)
    };
    let base = index(sources[0])?;
    let step = index(sources[1])?.checked_sub(base)?;
    if !(step == 1 || step == 2) {
        return None;
    }
    let offsets: Vec<usize> = (0..k)
        .map(|kk| index(sources[kk * R])?.checked_sub(base))
        .collect::<Option<_>>()?;
    let exact = (0..k).all(|kk| {
        (0..R).all(|x| index(sources[kk * R + x]) == Some(base + offsets[kk] + x * step))
    });
    if !exact {
        return None;
    }
    match k_offsets {
        Some(known) if *known != offsets => return None,
        Some(_) => {}
        None => *k_offsets = Some(offsets),
    }
    Some(PanelStart { base, step })
}

/// The storage of an im2col's output when it holds one set of panels (one output, one group: a grouped
/// convolution's are a batch of them), its `values()[0]`.
fn sole_panels(outputs: &[TValue]) -> Option<&PackedMatrixStorage> {
    let [output] = outputs else {
        return None;
    };
    let storage = output.storage_as::<PackedMatrixStorage>()?;
    (storage.values().len() == 1).then_some(storage)
}

/// tract's `LazyIm2col` node, whose evenly spaced panels this crate packs by vector ([`VectorIm2colPanels`]);
/// see the module's documentation.
#[derive(Debug, Clone)]
pub struct VectorIm2col {
    /// tract's node: makes the operand, and packs the panels that are not evenly spaced.
    lazy: Box<dyn TypedOp>,
    geometry: Arc<Im2colGeometry>,
}

impl PartialEq for VectorIm2col {
    fn eq(&self, other: &Self) -> bool {
        self.lazy == other.lazy && self.geometry == other.geometry
    }
}
impl Eq for VectorIm2col {}

impl Op for VectorIm2col {
    fn name(&self) -> StaticName {
        "VectorIm2col".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let even = self.geometry.panels.iter().filter(|p| p.is_some()).count();
        Ok(vec![format!(
            "{even} of {} panels packed by vector, k={}",
            self.geometry.panels.len(),
            self.geometry.k_offsets.len()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for VectorIm2col {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].clone();
        let outputs = self.lazy.eval(ctx, inputs)?;
        // Another input than the one probed (it cannot be, the shape being known) stays tract's.
        if input.datum_type() != DatumType::F32 || input.len() != self.geometry.input_len {
            return Ok(outputs);
        }
        // One set of panels, as probed; anything else is tract's as it made it.
        let sole = sole_panels(&outputs).map(|storage| {
            let batch: TVec<usize> = storage.batch_shape().into();
            (batch, storage.values()[0].clone())
        });
        let Some((batch, tracts)) = sole else {
            return Ok(outputs);
        };
        let panels = VectorIm2colPanels {
            tracts,
            input,
            geometry: self.geometry.clone(),
        };
        let stored = PackedMatrixStorage::new_batched(
            &batch,
            tvec![Box::new(panels) as Box<dyn MMMInputValue>],
        )
        .into_tensor(outputs[0].datum_type());
        Ok(tvec!(stored.into_tvalue()))
    }
}

impl TypedOp for VectorIm2col {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.lazy.output_facts(inputs)
    }

    as_op!();
}

/// tract's im2col operand, its evenly spaced panels packed by this crate's vector loads, the others by tract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorIm2colPanels {
    tracts: Box<dyn MMMInputValue>,
    /// The input tract's operand reads (the same tensor).
    input: TValue,
    geometry: Arc<Im2colGeometry>,
}

impl Hash for VectorIm2colPanels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // tract's value hashes the input's bytes.
        self.tracts.hash(state);
        self.geometry.hash(state);
    }
}

impl fmt::Display for VectorIm2colPanels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, evenly spaced panels packed by lookout", self.tracts)
    }
}

impl MMMInputValue for VectorIm2colPanels {
    /// tract's own format: the product walks its tiles as it would for tract's operand.
    fn format(&self) -> &dyn MMMInputFormat {
        self.tracts.format()
    }

    fn scratch_panel_buffer_layout(&self) -> Option<std::alloc::Layout> {
        self.tracts.scratch_panel_buffer_layout()
    }

    fn panel_bytes(&self, i: usize, buffer: Option<*mut u8>) -> TractResult<*const u8> {
        let (Some(Some(start)), Some(buffer)) = (self.geometry.panels.get(i), buffer) else {
            return self.tracts.panel_bytes(i, buffer);
        };
        let k = self.geometry.k_offsets.len();
        let plain = self.input.try_as_plain_ram()?;
        let input = plain.as_slice::<f32>()?;
        // SAFETY: tract hands each thread a buffer of `scratch_panel_buffer_layout()` (tract's own, at least
        // `k * R` f32, checked by the probe) for this operand, which no one else uses while the product runs on
        // that thread.
        let panel = unsafe { std::slice::from_raw_parts_mut(buffer as *mut f32, k * R) };
        if crate::kernels::im2col_panel_f32(
            input,
            start.base,
            &self.geometry.k_offsets,
            start.step,
            panel,
        ) {
            Ok(buffer)
        } else {
            self.tracts.panel_bytes(i, Some(buffer))
        }
    }

    fn mn(&self) -> usize {
        self.tracts.mn()
    }

    fn k(&self) -> usize {
        self.tracts.k()
    }

    fn exotic_fact(&self) -> &dyn ExoticFact {
        self.tracts.exotic_fact()
    }

    fn extract_at_mn_f16(&self, mn: usize, slice: &mut [f16]) -> TractResult<()> {
        self.tracts.extract_at_mn_f16(mn, slice)
    }

    fn extract_at_mn_f32(&self, mn: usize, slice: &mut [f32]) -> TractResult<()> {
        self.tracts.extract_at_mn_f32(mn, slice)
    }
}

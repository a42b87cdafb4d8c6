//! Activations stored k-innermost, packed for tract's matrix kernels by this crate's vector transpose, panel by
//! panel as the product needs them.
//!
//! tract turns a pointwise convolution into a matrix product whose activation operand is packed, at run time,
//! by an `OptMatMulPack` node: 16 positions a step of k, in panels, the whole activation at once. Where the
//! activation is channel-last (k, the input channels, innermost: the output of a depthwise convolution run
//! channel-last, so the input of every projection of EfficientNet-Lite and MobileNetV3), packing is a
//! transposition, and tract-linalg 0.23.9 does it in 4 × 4 tiles moved value by value on x86 (its vector
//! transposes are ARM's), into a copy as large as the activation that goes out to memory and comes back.
//! [`KInnerPack`] replaces such a node where this crate has a vector transpose for it (16-wide panels, x86_64
//! with AVX-512F: `crate::kernels::pack_k_inner_f32`) and hands the product the activation itself
//! ([`KInnerPanels`]): each panel is packed when a tile needs it, into the scratch buffer tract gives each thread
//! for it (as tract's own lazy im2col is), in the same bytes and layout tract's packer writes, so the kernel that
//! reads it is unchanged: a `PackedFormat` panel (tract's own kernels) as that packer lays it out, a
//! `StridedKMajor` one (this crate's AVX-512 kernel, `kernels/x86_64/mmm.rs`) as that format's packed fallback
//! does, behind its panel descriptor. Measured in docs/performance.md ("Channel-last activations packed by a
//! vector transpose").

use std::fmt;
use std::sync::Arc;

use tract_core::internal::*;
use tract_core::ops::matmul::optimized::{MatMulOperand, OptMatMul, ProtoFusedSpec};
use tract_core::ops::matmul::pack::DynPackedExoticFact;
use tract_linalg::mmm::{EagerPackedInput, MMMInputFormat, MMMInputValue, PackedMatrixStorage};
use tract_linalg::pack::PackedFormat;
use tract_linalg::strided_panel::StridedKMajor;
use tract_linalg::WeightType;

use crate::kernels::{StridedPanelDesc, K_INNER_PANEL as R};

/// The byte alignment of `StridedKMajor`'s packed fallback (`tract_linalg::strided_panel`'s `packed_format`),
/// which this crate's panels must reproduce.
const STRIDED_FALLBACK_ALIGNMENT: usize = 128;

/// `LOOKOUT_K_INNER_PACK=off` leaves the packing of channel-last activations to tract: the baseline of the
/// side-by-side figures (`runtime/examples/plan_ab.rs`), and a way out should the rewrite misbehave on a model.
pub const K_INNER_PACK_SWITCH: &str = "LOOKOUT_K_INNER_PACK";

/// Replaces every `OptMatMulPack` whose input is f32 with k innermost by a [`KInnerPack`], where this crate can
/// pack it (see the module's documentation), unless [`K_INNER_PACK_SWITCH`] is `off`. Returns how many were
/// replaced.
pub fn rewrite_k_inner_packs(model: &mut TypedModel) -> TractResult<usize> {
    if !crate::kernels::packs_k_inner_f32() || crate::plan::switched_off(K_INNER_PACK_SWITCH) {
        return Ok(0);
    }
    crate::plan::rewrite_each(model, k_inner_pack_patch)
}

/// The patch replacing node `id` by a [`KInnerPack`], if it packs a k-innermost f32 activation into one of the
/// formats this crate writes.
fn k_inner_pack_patch(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    // tract-core keeps `OptMatMulPack`'s fields to itself: its name identifies it, its axes mapping names its k
    // and mn axes, and its output fact carries its packer.
    if node.op.name() != "OptMatMulPack" || node.inputs.len() != 1 || node.outputs.len() != 1 {
        return Ok(None);
    }
    let input_fact = model.outlet_fact(node.inputs[0])?;
    let output_fact = model.outlet_fact(OutletId::new(id, 0))?;
    let Some(shape) = input_fact.shape.as_concrete() else {
        return Ok(None);
    };
    if input_fact.datum_type != DatumType::F32 {
        return Ok(None);
    }
    let Some(layout) = sole_packer(output_fact).and_then(PanelLayout::of) else {
        return Ok(None);
    };
    if !packed_once_per_panel(model, node) {
        return Ok(None);
    }
    let Some(op) = node.op.as_typed() else {
        return Ok(None);
    };
    let mapping = op.axes_mapping(&[input_fact], &[output_fact])?;
    let axis_of = |repr: char| -> Option<usize> {
        let axis = mapping.axis(repr).ok()?;
        match axis.inputs[0][..] {
            [position] => Some(position),
            _ => None,
        }
    };
    let (Some(k_axis), Some(mn_axis)) = (axis_of('K'), axis_of('M')) else {
        return Ok(None);
    };
    // k innermost, and nothing else but mn: one activation, its rows `k` values apart.
    let k_innermost = k_axis + 1 == shape.len();
    let single = shape
        .iter()
        .enumerate()
        .all(|(axis, &dim)| axis == k_axis || axis == mn_axis || dim == 1);
    if !k_innermost || !single || shape[k_axis] == 0 || shape[mn_axis] == 0 {
        return Ok(None);
    }
    let mut patch = TypedModelPatch::default();
    let input = patch.taps(model, &node.inputs)?;
    let packed = patch.wire_node(
        &node.name,
        KInnerPack {
            layout,
            k_axis,
            mn_axis,
            output_fact: output_fact.clone(),
        },
        &input,
    )?;
    patch.shunt_outside(model, OutletId::new(id, 0), packed[0])?;
    Ok(Some(patch))
}

/// The one format a node's packed output is made in (tract's `DynPackedExoticFact`, as its pack and im2col
/// nodes declare it), if it names one.
pub(crate) fn sole_packer(fact: &TypedFact) -> Option<&dyn MMMInputFormat> {
    let packed = fact
        .exotic_fact
        .as_ref()?
        .downcast_ref::<DynPackedExoticFact>()?;
    match &packed.packers[..] {
        [packer] => Some(&**packer),
        _ => None,
    }
}

/// Whether tract will walk the product that reads node `pack`'s output so that each panel of it is packed once.
/// tract packs an operand made on demand (not an eager `PackedFormat`) again whenever the tile it needs moves to
/// another panel of it, and orders the tiles by the operands' formats (`FusedSpec::prefer_col_outer`): an A
/// made on demand goes row by row (each A panel once) unless B is made on demand too, in which case the order
/// is rows too; a B made on demand goes column by column only if A is an eager `PackedFormat`. Anything else
/// (one consumer that is not a single product, an operand of two activations) is left to tract.
fn packed_once_per_panel(model: &TypedModel, pack: &TypedNode) -> bool {
    let [consumer] = &pack.outputs[0].successors[..] else {
        return false;
    };
    let Some(product) = model.node(consumer.node).op_as::<OptMatMul>() else {
        return false;
    };
    let [ProtoFusedSpec::AddMatMul { a, b, .. }] = &product
        .micro_ops
        .iter()
        .filter(|op| matches!(op, ProtoFusedSpec::AddMatMul { .. }))
        .collect::<Vec<_>>()[..]
    else {
        return false;
    };
    let is_this = |operand: &MatMulOperand| matches!(operand, MatMulOperand::Input(slot) if *slot == consumer.slot);
    match (a, b) {
        (a, _) if is_this(a) => true,
        (MatMulOperand::Const(a), b) if is_this(b) => a.format().is::<PackedFormat>(),
        _ => false,
    }
}

/// Which of tract's panel formats a [`KInnerPanels`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PanelLayout {
    /// `PackedFormat` (f32, 16 wide): tract's own kernels read it.
    Packed(PackedFormat),
    /// `StridedKMajor` (16 wide), whose packed fallback is a `PackedFormat` aligned on 128 bytes read through
    /// one descriptor per panel.
    Strided(StridedKMajor),
}

impl PanelLayout {
    fn of(packer: &dyn MMMInputFormat) -> Option<PanelLayout> {
        if let Some(format) = packer.downcast_ref::<PackedFormat>() {
            return (format.dt == DatumType::F32 && format.r == R)
                .then(|| PanelLayout::Packed(format.clone()));
        }
        if let Some(format) = packer.downcast_ref::<StridedKMajor>() {
            return (format.r() == R).then_some(PanelLayout::Strided(*format));
        }
        None
    }

    /// The packed layout the panels are written in.
    fn packed_format(&self) -> PackedFormat {
        match self {
            PanelLayout::Packed(format) => format.clone(),
            PanelLayout::Strided(_) => {
                PackedFormat::new(DatumType::F32, R, STRIDED_FALLBACK_ALIGNMENT)
            }
        }
    }
}

/// An `OptMatMulPack` of an f32 activation stored with k innermost, replaced: its output is the activation as
/// [`KInnerPanels`], packed panel by panel by this crate's vector transpose (`crate::kernels::pack_k_inner_f32`)
/// into the same bytes tract's packer writes. See the module's documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KInnerPack {
    layout: PanelLayout,
    k_axis: usize,
    mn_axis: usize,
    /// The replaced node's output fact: consumers see the same packed operand as before.
    output_fact: TypedFact,
}

impl Op for KInnerPack {
    fn name(&self) -> StaticName {
        "KInnerPack".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?}. k axis: {}, mn axis: {}",
            self.layout, self.k_axis, self.mn_axis
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for KInnerPack {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut batch: TVec<usize> = input.shape().into();
        batch.remove(self.k_axis.max(self.mn_axis));
        batch.remove(self.k_axis.min(self.mn_axis));
        let panels = KInnerPanels::new(
            &self.layout,
            input.into_arc_tensor(),
            self.k_axis,
            self.mn_axis,
        )?;
        let stored = PackedMatrixStorage::new_batched(
            &batch,
            tvec![Box::new(panels) as Box<dyn MMMInputValue>],
        )
        .into_tensor(DatumType::F32);
        Ok(tvec!(stored.into_tvalue()))
    }
}

impl TypedOp for KInnerPack {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.output_fact.clone()))
    }

    as_op!();
}

/// Room for a [`StridedPanelDesc`] at the head of a panel's buffer, the panel's values starting on a line.
const DESCRIPTOR_BYTES: usize = 128;

/// A k-innermost activation as the operand of one matrix product, each panel packed when the product asks
/// for it, into the scratch buffer tract gives each thread for it (as tract's own lazy im2col does): 16
/// positions × k values, a few kilobytes that stay in the first-level cache for the kernel that reads them,
/// instead of a packed copy of the whole activation written out and read back. tract orders the tiles of a
/// product so that an operand packed this way is packed once per panel (`FusedSpec::prefer_col_outer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KInnerPanels {
    /// What the kernel reads: a `PackedFormat` panel, or a `StridedKMajor` one behind its descriptor.
    layout: PanelLayout,
    panel_len: usize,
    alignment: usize,
    input: Arc<Tensor>,
    row_stride: usize,
    k: usize,
    mn: usize,
    fact: NoExoticFact,
}

impl KInnerPanels {
    fn new(
        layout: &PanelLayout,
        input: Arc<Tensor>,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Self> {
        ensure!(input.datum_type() == DatumType::F32, "KInnerPack packs f32");
        let (k, mn) = (input.shape()[k_axis], input.shape()[mn_axis]);
        let row_stride = usize::try_from(input.strides()[mn_axis])?;
        ensure!(
            input.strides()[k_axis] == 1 && row_stride >= k,
            "KInnerPack needs k innermost"
        );
        ensure!(
            mn == 0 || input.len() >= (mn - 1) * row_stride + k,
            "KInnerPack: the activation is smaller than its shape"
        );
        let packed = layout.packed_format();
        Ok(KInnerPanels {
            layout: layout.clone(),
            panel_len: packed.single_panel_len(k),
            alignment: packed.alignment_bytes.clamp(64, 4096),
            input,
            row_stride,
            k,
            mn,
            fact: NoExoticFact,
        })
    }

    /// Where a panel's values start in its buffer: after the descriptor a `StridedKMajor` kernel reads first.
    fn values_offset(&self) -> usize {
        match self.layout {
            PanelLayout::Packed(_) => 0,
            PanelLayout::Strided(_) => DESCRIPTOR_BYTES,
        }
    }
}

impl fmt::Display for KInnerPanels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packed on demand by lookout, k={} mn={}",
            self.format(),
            self.k,
            self.mn
        )
    }
}

impl MMMInputValue for KInnerPanels {
    /// The format named to tract: `StridedKMajor` itself, or `KInnerFormat` in place of a `PackedFormat`, so
    /// that tract sees an operand packed on demand.
    fn format(&self) -> &dyn MMMInputFormat {
        match &self.layout {
            PanelLayout::Packed(_) => &KInnerFormat,
            PanelLayout::Strided(format) => format,
        }
    }

    fn scratch_panel_buffer_layout(&self) -> Option<std::alloc::Layout> {
        let bytes = self.values_offset() + self.panel_len * size_of::<f32>();
        std::alloc::Layout::from_size_align(bytes, self.alignment).ok()
    }

    fn panel_bytes(&self, i: usize, buffer: Option<*mut u8>) -> TractResult<*const u8> {
        let buffer = buffer.context("KInnerPack: no scratch buffer for a panel")?;
        let first = i * R;
        ensure!(first < self.mn, "panel {i} of {} positions", self.mn);
        let rows = R.min(self.mn - first);
        let plain = self.input.try_as_plain_ram()?;
        let source = &plain.as_slice::<f32>()?[first * self.row_stride..];
        // SAFETY: tract hands each thread a buffer of `scratch_panel_buffer_layout()` for this operand, which
        // no one else uses while the product runs on that thread: its values start on a 64-byte boundary.
        let values = unsafe {
            std::slice::from_raw_parts_mut(
                buffer.add(self.values_offset()) as *mut f32,
                self.panel_len,
            )
        };
        let packed = crate::kernels::pack_k_inner_f32(
            source,
            self.row_stride,
            self.k,
            rows,
            values,
            self.panel_len,
        );
        ensure!(packed, "KInnerPack: no vector transpose on this machine");
        if let PanelLayout::Strided(_) = self.layout {
            let descriptor = StridedPanelDesc {
                ptr: values.as_ptr() as *const u8,
                k_byte_stride: (R * size_of::<f32>()) as isize,
                valid: R,
            };
            // SAFETY: the buffer's first `DESCRIPTOR_BYTES` are this descriptor's, aligned on the layout's
            // alignment.
            unsafe { (buffer as *mut StridedPanelDesc).write(descriptor) };
        }
        Ok(buffer)
    }

    fn mn(&self) -> usize {
        self.mn
    }

    fn k(&self) -> usize {
        self.k
    }

    fn exotic_fact(&self) -> &dyn ExoticFact {
        &self.fact
    }

    fn extract_at_mn_f16(&self, _mn: usize, _slice: &mut [f16]) -> TractResult<()> {
        bail!("f32 panels have no f16 extract")
    }

    fn extract_at_mn_f32(&self, mn: usize, slice: &mut [f32]) -> TractResult<()> {
        ensure!(slice.len() == self.k && mn < self.mn);
        let plain = self.input.try_as_plain_ram()?;
        let start = mn * self.row_stride;
        slice.copy_from_slice(&plain.as_slice::<f32>()?[start..start + self.k]);
        Ok(())
    }
}

/// The format a [`KInnerPanels`] names to tract in place of a `PackedFormat`: 16-wide panels laid out as
/// `PackedFormat` lays them, packed on demand. A type of its own, so that tract sees the operand is not an
/// eager `PackedFormat` one and walks the product's tiles panel by panel of it; it packs nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KInnerFormat;

impl fmt::Display for KInnerFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KInnerF32[{R}]")
    }
}

impl MMMInputFormat for KInnerFormat {
    fn prepare_tensor(&self, _t: &Tensor, _k_axis: usize, _mn_axis: usize) -> TractResult<Tensor> {
        bail!("KInnerF32 panels are made by lookout's KInnerPack only")
    }

    fn prepare_one_view(
        &self,
        _t: &TensorView,
        _k_axis: usize,
        _mn_axis: usize,
    ) -> TractResult<Box<dyn MMMInputValue>> {
        bail!("KInnerF32 panels are made by lookout's KInnerPack only")
    }

    fn precursor(&self) -> WeightType {
        WeightType::Plain(DatumType::F32)
    }

    fn r(&self) -> usize {
        R
    }

    fn k_alignment(&self) -> usize {
        1
    }

    fn mem_size(&self, _k: TDim, _mn: TDim) -> TDim {
        0.to_dim()
    }

    fn extract_at_mn_f16(&self, _: &EagerPackedInput, _: usize, _: &mut [f16]) -> TractResult<()> {
        bail!("KInnerF32 panels have no f16 extract")
    }

    fn extract_at_mn_f32(&self, _: &EagerPackedInput, _: usize, _: &mut [f32]) -> TractResult<()> {
        bail!("KInnerF32 panels are not an EagerPackedInput")
    }
}

/// The exotic fact of [`KInnerPanels`]: no buffer of its own to account for (as tract's own strided values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NoExoticFact;

impl ExoticFact for NoExoticFact {
    fn buffer_sizes(&self) -> TVec<TDim> {
        tvec!(0.to_dim())
    }
}

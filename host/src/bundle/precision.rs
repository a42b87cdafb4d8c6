//! The numeric precisions an export can have, each a reduction tract really executes.
//!
//! - `f32`: the combined graph as built.
//! - `f16`: tract's `f32_to_f16` transform over the whole graph (weights and activations). The file halves;
//!   tract runs it with native FP16 kernels on ARMv8.2 (Pi 5) and emulates it elsewhere (slow on x86, Pi 4).
//! - `f32-q4head`: weight-only Q4_0 block quantization (32 weights share one f16 scale) of the head's largest
//!   matrix, wired as a block-quantized constant into its einsum; activations stay f32. It shrinks the tutorial
//!   head (a 62720×256 matrix, ≈ 64 MB in f32) about 6×; on a pooled head it saves little.
//! - `q4`: every matrix weight that fills whole 32-weight blocks (pointwise convolutions, the head, the
//!   rejection's bank) as Q4_0, activations f32 ([`super::quantize`] says what stays float and why). The
//!   smallest bundle that runs at full speed on every Pi.
//! - `f16-q4`: `f16`, then the same block quantization (the blocks' scales are f16 anyway): smaller still, for
//!   the Pi 5.
//! - `auto`: the smallest of `q4`, `f32-q4head` and `f32` within the accuracy gate (see [`AUTO_CANDIDATES`]).
//! - `int8`: refused, see [`INT8_REFUSAL`].

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use tract_core::internal::tract_linalg::block_quant::{
    BlockQuant, BlockQuantFact, BlockQuantStorage, Q4_0,
};
use tract_core::ops::konst::Const;
use tract_core::prelude::*;

use lookout_shared::bundle::Precision;

use crate::head::net::Head;

use super::quantize::{quantize_weights, WeightLayer};
use super::ExportError;

/// Why `--precision int8` is refused, with what was tried and measured (docs/known-limits.md, "int8"; reproduce with
/// `python3 benches/int8_experiment.py` and `lookout extract --backbone <int8.onnx>`).
pub const INT8_REFUSAL: &str = "--precision int8 is not available: the accuracy holds but tract cannot carry it to \
the Pi. Measured on the cats-vs-dogs Lite0 run (400 test photos, float 98.25 %): onnxruntime's static \
quantization calibrated on 200 training photos, per-channel weights, stem conv kept in float, gives 98.25 % in \
onnxruntime and 98.00 % in tract 0.23.9 (399/400 same labels, 19.6 MB instead of 77.7 MB; per-tensor weights lose \
1.0 point); but tract runs those QLinearConv graphs 8.8x SLOWER than f32 on x86 (1.1 vs 9.7 images/s), runs the \
QDQ form in float, and cannot serialize any of them to NNEF (`No serializer found for QuantizeLinearU8`), so none \
fits in a bundle. Refusing rather than shipping a float model labelled int8. Use --precision q4 (every weight \
matrix in tract's 4-bit blocks, which its kernels multiply natively: Lite0 with the tutorial head 11.5 MB, within \
a point of float) or auto (the smallest within --max-drop); for other engines, `lookout export --onnx` plus \
benches/int8_experiment.py writes the int8 ONNX.";

/// Numeric precision of an exported model, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExportPrecision {
    /// 32-bit float throughout: the reference, fastest on x86 and the Pi 4.
    #[value(name = "f32")]
    F32,
    /// 16-bit float weights and activations: half the size; fast only with ARMv8.2 FP16 (Pi 5).
    #[value(name = "f16")]
    F16,
    /// 8-bit integer (refused: tract 0.23.9 runs the quantized graphs slower than f32 and cannot store them
    /// in a bundle; the error gives the measured figures).
    #[value(name = "int8")]
    Int8,
    /// f32 activations, the head's largest weight matrix in 4-bit blocks (Q4_0).
    #[value(name = "f32-q4head")]
    #[serde(rename = "f32-q4head")]
    F32Q4Head,
    /// f32 activations, every weight matrix in 4-bit blocks (Q4_0: pointwise convs, head, bank; padded to
    /// whole 32-weight blocks where cheap): the smallest bundle at full speed on any Pi.
    #[value(name = "q4")]
    Q4,
    /// f16 activations and float weights, the weight matrices in 4-bit blocks: smaller still; fast on a Pi 5
    /// (ARMv8.2 FP16) only.
    #[value(name = "f16-q4")]
    F16Q4,
    /// the smallest of q4, f32-q4head and f32 that passes the accuracy gate, layers kept float included (f16
    /// kinds only when asked by name: a Pi 4 emulates FP16; q4 not when the rejection was fitted on
    /// camera-like views).
    #[value(name = "auto")]
    Auto,
}

/// What `lookout fit` and `lookout export` write unless told otherwise: the smallest bundle that passes the
/// accuracy gate. Why: on cats-vs-dogs (EfficientNet-Lite0, the tutorial head) q4 passes at 11.5 MB against
/// 72.6 MB for f32, with the same accuracy through the edge runtime and 1.2–1.4x the speed of f32 on one core
/// (docs/quantization.md and the performance figures); the gate costs one evaluation of the test photos per try.
/// `--precision f32` is the float bundle.
pub const DEFAULT_PRECISION: ExportPrecision = ExportPrecision::Auto;

/// What `--precision auto` tries, smallest first: the kinds that run at full speed on a Pi 4 and a Pi 5 alike.
pub const AUTO_CANDIDATES: [ExportPrecision; 3] = [
    ExportPrecision::Q4,
    ExportPrecision::F32Q4Head,
    ExportPrecision::F32,
];

impl fmt::Display for ExportPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportPrecision::F32 => "f32",
            ExportPrecision::F16 => "f16",
            ExportPrecision::Int8 => "int8",
            ExportPrecision::F32Q4Head => "f32-q4head",
            ExportPrecision::Q4 => "q4",
            ExportPrecision::F16Q4 => "f16-q4",
            ExportPrecision::Auto => "auto",
        })
    }
}

impl ExportPrecision {
    /// The bundle header's precision, for those that can be produced.
    pub fn bundle_precision(self) -> Option<Precision> {
        match self {
            ExportPrecision::F32 => Some(Precision::F32),
            ExportPrecision::F16 => Some(Precision::F16),
            ExportPrecision::Int8 | ExportPrecision::Auto => None,
            ExportPrecision::F32Q4Head => Some(Precision::F32WeightsQ4),
            ExportPrecision::Q4 => Some(Precision::Q4),
            ExportPrecision::F16Q4 => Some(Precision::F16Q4),
        }
    }

    /// Whether the precision block-quantizes the weight matrices of the whole graph.
    pub fn quantizes_weights(self) -> bool {
        matches!(self, ExportPrecision::Q4 | ExportPrecision::F16Q4)
    }
}

/// Fails early (before loading anything heavy) when `precision` cannot be produced for `head`.
pub fn check_available(precision: ExportPrecision, head: &Head) -> Result<(), ExportError> {
    match precision {
        ExportPrecision::Int8 => Err(ExportError::Precision(INT8_REFUSAL.to_string())),
        ExportPrecision::F32Q4Head if q4_layer(head).is_none() => Err(ExportError::Precision(format!(
            "--precision f32-q4head needs a head layer whose input count is a multiple of {} (Q4_0 blocks run \
             along the inputs); this head's layers take {:?}: use --precision f32 or f16",
            Q4_0.block_len(),
            head.layers.iter().map(|l| l.inputs).collect::<Vec<_>>()
        ))),
        _ => Ok(()),
    }
}

/// Index of the head layer that `f32-q4head` quantizes: the largest one whose inputs fill whole Q4_0 blocks.
pub fn q4_layer(head: &Head) -> Option<usize> {
    head.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.inputs % Q4_0.block_len() == 0)
        .max_by_key(|(_, l)| l.weight.len())
        .map(|(i, _)| i)
}

/// Applies a whole-graph precision transform; `keep_float` names the weight layers `q4` and `f16-q4` leave
/// float. `f32-q4head` is done while composing (see [`block_quant_weight`]), so here it is the identity.
/// Returns the model and, for the block-quantized kinds, every weight matrix with what became of it.
pub fn apply(
    precision: ExportPrecision,
    model: TypedModel,
    keep_float: &BTreeSet<String>,
) -> Result<(TypedModel, Vec<WeightLayer>), ExportError> {
    let fail = |source: TractError| ExportError::PrecisionTransform { precision, source };
    let to_f16 = |model: TypedModel| -> Result<TypedModel, ExportError> {
        let transform = tract_core::transform::get_transform("f32_to_f16")
            .map_err(fail)?
            .ok_or_else(|| {
                ExportError::Precision("this tract build has no f32_to_f16 transform".into())
            })?;
        let model = transform.transform_into(model).map_err(fail)?;
        model.into_decluttered().map_err(fail)
    };
    match precision {
        ExportPrecision::F32 | ExportPrecision::F32Q4Head => Ok((model, Vec::new())),
        ExportPrecision::F16 => Ok((to_f16(model)?, Vec::new())),
        ExportPrecision::Q4 => quantize_weights(model, keep_float).map_err(fail),
        ExportPrecision::F16Q4 => quantize_weights(to_f16(model)?, keep_float).map_err(fail),
        ExportPrecision::Int8 => Err(ExportError::Precision(INT8_REFUSAL.to_string())),
        ExportPrecision::Auto => Err(ExportError::Precision(
            "--precision auto is resolved by export, not applied".into(),
        )),
    }
}

/// Adds `weight` ([outputs, inputs], row-major) to `model` as a Q4_0 block-quantized constant of shape
/// [1, outputs, inputs], the form tract's einsum takes block-quantized weights in.
pub fn block_quant_weight(
    model: &mut TypedModel,
    name: &str,
    weight: &[f32],
    outputs: usize,
    inputs: usize,
) -> TractResult<OutletId> {
    let format = Q4_0;
    anyhow::ensure!(
        inputs.is_multiple_of(format.block_len()),
        "{name}: {inputs} inputs is not a whole number of Q4_0 blocks"
    );
    let blob = format.quant_f32(weight)?;
    let storage = BlockQuantStorage::new(Box::new(format), outputs, inputs, Arc::new(blob))?;
    let fact = Box::new(BlockQuantFact::new(
        Box::new(format),
        tvec!(1, outputs, inputs),
    ));
    let tensor = storage.into_tensor_with_shape(f32::datum_type(), &[1, outputs, inputs]);
    Ok(model.wire_node(
        name,
        Const::new_with_exotic_fact(Arc::new(tensor), fact)?,
        &[],
    )?[0])
}

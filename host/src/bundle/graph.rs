//! Building the one combined tract graph: backbone → pooling → flatten → trained head → activation.
//!
//! The backbone is loaded from the file the features were extracted with, pinned to batch 1, cut where the
//! extraction cut it, and the head's dense layers are appended with tract-core ops (einsum + add, max(·, 0)).
//! Dropout is the identity at inference, so it has no node.

use std::path::Path;

use lookout_shared::PreprocessSpec;
use tract_core::ops::change_axes::{wire_with_rank_broadcast, AxisOp};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};
use tract_core::prelude::*;

use lookout_models::backbone::Backbone;
use lookout_shared::bundle::OutputKind;

use crate::features::Pooling;
use crate::head::net::{Dense, Head};
use crate::head::unknown::UnknownDetector;

use super::ExportError;

/// Name of the combined graph's output node.
pub const OUTPUT_NODE: &str = "lookout_probabilities";

/// Loads the backbone at `path` exactly as extraction did ([`lookout_models::backbone::Backbone`]), pinned to
/// `input_shape` (batch 1) and cut at `cut` when given.
pub fn load_backbone(
    path: &Path,
    preprocess: &PreprocessSpec,
    cut: Option<&str>,
    input_shape: &[usize],
) -> Result<TypedModel, ExportError> {
    let fail = |source| ExportError::Backbone {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    if !path.exists() {
        return Err(ExportError::BackboneMissing {
            path: path.to_path_buf(),
        });
    }
    let backbone = Backbone::from_file(path, Some(preprocess.clone())).map_err(fail)?;
    let model = backbone
        .load_typed_with_input(input_shape, cut)
        .map_err(fail)?;
    if model.inputs.len() != 1 || model.outputs.len() != 1 {
        return Err(ExportError::BackboneArity {
            path: path.to_path_buf(),
            inputs: model.inputs.len(),
            outputs: model.outputs.len(),
        });
    }
    Ok(model)
}

/// The backbone's output shape as concrete numbers.
pub fn output_shape(model: &TypedModel) -> Result<Vec<usize>, ExportError> {
    let fact = model.output_fact(0).map_err(ExportError::Graph)?;
    fact.shape
        .as_concrete()
        .map(<[usize]>::to_vec)
        .ok_or_else(|| {
            ExportError::GraphShape(format!(
                "the backbone's output shape {:?} is not fixed",
                fact.shape
            ))
        })
}

/// Appends pooling, flatten, the head and the activation to `backbone`.
///
/// `features_pooled` says whether extraction average-pooled the backbone's map before caching it (the head was
/// trained on those pooled vectors). The head's own `pool` then applies to what was cached.
pub fn compose(
    mut model: TypedModel,
    head: &Head,
    features_pooled: bool,
    output: OutputKind,
    q4_layer: Option<usize>,
    unknown: Option<&UnknownDetector>,
) -> Result<TypedModel, ExportError> {
    let graph = ExportError::Graph;
    let mut wire = model.outputs[0];
    let mut shape = output_shape(&model)?;
    if shape.first() != Some(&1) {
        return Err(ExportError::GraphShape(format!(
            "the backbone's output {shape:?} is not batch-1"
        )));
    }
    let backbone_out = (wire, shape.clone());
    if features_pooled && shape.len() > 2 {
        wire = global_average_pool(&mut model, "lookout_features_pool", wire, &shape)
            .map_err(graph)?;
        shape.truncate(2);
    }
    let ood_score = match unknown {
        Some(detector) => {
            let (features, features_shape) = if shape.len() == 2 {
                (wire, shape.clone())
            } else {
                backbone_out
            };
            Some(wire_ood_score(&mut model, features, &features_shape, detector).map_err(graph)?)
        }
        None => None,
    };
    // What the cache held for one image must be what the head was trained on.
    let cached: Vec<usize> = shape[1..].to_vec();
    if cached.iter().product::<usize>() != head.input_len() {
        return Err(ExportError::Mismatch(format!(
            "the backbone gives features of shape {cached:?}, the head was trained on {:?}: the run's backbone file \
             is not the one its features came from",
            head.input_shape
        )));
    }
    if head.pool == Pooling::Avg && shape.len() > 2 {
        wire = global_average_pool(&mut model, "lookout_head_pool", wire, &shape).map_err(graph)?;
        shape.truncate(2);
    }
    if shape.len() > 2 {
        let flat: usize = shape[1..].iter().product();
        let from: TVec<TDim> = shape[1..].iter().map(|&d| TDim::from(d)).collect();
        wire = model
            .wire_node(
                "lookout_flatten",
                AxisOp::Reshape(1, from, tvec![TDim::from(flat)]),
                &[wire],
            )
            .map_err(graph)?[0];
    }
    for (i, layer) in head.layers.iter().enumerate() {
        let relu = i + 1 < head.layers.len();
        wire = wire_dense(&mut model, wire, layer, q4_layer == Some(i), relu).map_err(graph)?;
    }
    wire = match output {
        OutputKind::Sigmoid => {
            model.wire_node(OUTPUT_NODE, tract_core::ops::nn::sigmoid(), &[wire])
        }
        OutputKind::Softmax => model.wire_node(
            OUTPUT_NODE,
            Softmax {
                axes: tvec![1],
                quant_output_dt: None,
                kind: SoftmaxKind::Softmax,
            },
            &[wire],
        ),
    }
    .map_err(graph)?[0];
    let outputs: Vec<OutletId> = std::iter::once(wire).chain(ood_score).collect();
    model.select_output_outlets(&outputs).map_err(graph)?;
    model.into_decluttered().map_err(graph)
}

/// Name of the combined graph's second output (bundles with rejection): the out-of-distribution score.
pub const OOD_SCORE_NODE: &str = "lookout_ood_score";

/// Appends the k-nearest-neighbour cosine score of `head::unknown` to the backbone's features: pool to
/// `[1, C]` (unless they are already), L2-normalise, one matmul with the bank `[M, C]`, the max over the bank,
/// `1 − max`. Computes what `UnknownDetector::scores` computes, in the graph, so it is quantized with it.
fn wire_ood_score(
    model: &mut TypedModel,
    features: OutletId,
    shape: &[usize],
    detector: &UnknownDetector,
) -> TractResult<OutletId> {
    use tract_core::ops::math;
    let name = "lookout_unknown";
    let mut x = features;
    if shape.len() > 2 {
        x = global_average_pool(model, &format!("{name}_pool"), x, shape)?;
    }
    let squares = model.wire_node(format!("{name}.square"), math::mul(), &[x, x])?[0];
    let sum = model.wire_node(
        format!("{name}.sum_squares"),
        Reduce::new(tvec![1], Reducer::Sum),
        &[squares],
    )?[0];
    // A zero vector stays zero (far from everything) rather than becoming NaN.
    let tiny = model.add_const(format!("{name}.epsilon"), tensor0(1e-24f32))?;
    let sum =
        wire_with_rank_broadcast(format!("{name}.floor"), model, math::max(), &[sum, tiny])?[0];
    let inverse_norm = model.wire_node(format!("{name}.rsqrt"), math::rsqrt(), &[sum])?[0];
    let unit = wire_with_rank_broadcast(
        format!("{name}.normalize"),
        model,
        math::mul(),
        &[x, inverse_norm],
    )?[0];
    let bank = tensor1(&detector.bank).into_shape(&[detector.bank_size(), detector.dim])?;
    let bank = model.add_const(format!("{name}.bank"), bank)?;
    let einsum = EinSum {
        axes: "bk,nk->bn".parse()?,
        operating_dt: f32::datum_type(),
        q_params: None,
    };
    let similarity = model.wire_node(format!("{name}.similarity"), einsum, &[unit, bank])?[0];
    let nearest = model.wire_node(
        format!("{name}.nearest"),
        Reduce::new(tvec![1], Reducer::Max),
        &[similarity],
    )?[0];
    let one = model.add_const(format!("{name}.one"), tensor0(1f32))?;
    Ok(wire_with_rank_broadcast(OOD_SCORE_NODE, model, math::sub(), &[one, nearest])?[0])
}

/// Appends one dense layer (einsum + bias, then ReLU unless it is the last) to `wire`; `q4` stores its weight
/// block-quantized.
fn wire_dense(
    model: &mut TypedModel,
    wire: OutletId,
    layer: &Dense,
    q4: bool,
    relu: bool,
) -> TractResult<OutletId> {
    let weight_name = format!("lookout_{}.weight", layer.name);
    let (weight, axes) = if q4 {
        let weight = super::precision::block_quant_weight(
            model,
            &weight_name,
            &layer.weight,
            layer.outputs,
            layer.inputs,
        )?;
        // Block-quantized weights carry a leading group axis: [1, outputs, inputs].
        (weight, "bk,Gnk->bn")
    } else {
        let weight = tensor1(&layer.weight).into_shape(&[layer.outputs, layer.inputs])?;
        (model.add_const(weight_name, weight)?, "bk,nk->bn")
    };
    let einsum = EinSum {
        axes: axes.parse()?,
        operating_dt: f32::datum_type(),
        q_params: None,
    };
    let mut wire = model.wire_node(
        format!("lookout_{}.matmul", layer.name),
        einsum,
        &[wire, weight],
    )?[0];
    let bias = tensor1(&layer.bias).into_shape(&[1, layer.outputs])?;
    let bias = model.add_const(format!("lookout_{}.bias", layer.name), bias)?;
    wire = model.wire_node(
        format!("lookout_{}.add", layer.name),
        tract_core::ops::math::add(),
        &[wire, bias],
    )?[0];
    if relu {
        let zero = model.add_const(format!("lookout_{}.relu_zero", layer.name), tensor0(0f32))?;
        wire = wire_with_rank_broadcast(
            format!("lookout_{}.relu", layer.name),
            model,
            tract_core::ops::math::max(),
            &[wire, zero],
        )?[0];
    }
    Ok(wire)
}

/// Mean over the spatial axes of a [1, C, H, W] map, giving [1, C].
fn global_average_pool(
    model: &mut TypedModel,
    name: &str,
    wire: OutletId,
    shape: &[usize],
) -> TractResult<OutletId> {
    let spatial: Vec<usize> = (2..shape.len()).collect();
    let area: usize = shape[2..].iter().product();
    let sum = model.wire_node(
        format!("{name}.sum"),
        Reduce::new(spatial.iter().copied().collect(), Reducer::Sum),
        &[wire],
    )?[0];
    let scale = model.add_const(format!("{name}.scale"), tensor0(1.0f32 / area as f32))?;
    let mut wire = wire_with_rank_broadcast(
        format!("{name}.mean"),
        model,
        tract_core::ops::math::mul(),
        &[sum, scale],
    )?[0];
    for (i, &axis) in spatial.iter().enumerate().rev() {
        wire = model.wire_node(format!("{name}.squeeze{i}"), AxisOp::Rm(axis), &[wire])?[0];
    }
    Ok(wire)
}

/// Serialises a (decluttered) model as a gzip-compressed tract NNEF tar archive (`ModelFormat::NnefTarGz`).
/// Deterministic: the tar's timestamps are tract's fixed ones and gzip's is zero, so the same graph gives the
/// same bytes (and the same size) on every export.
pub fn to_nnef_tar_gz(model: &TypedModel) -> Result<Vec<u8>, ExportError> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    tract_nnef::nnef()
        .write_to_tar_with_config(model, encoder, false, true)
        .map_err(ExportError::Serialize)?
        .finish()
        .map_err(|e| ExportError::Serialize(e.into()))
}

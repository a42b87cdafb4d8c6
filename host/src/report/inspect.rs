//! A torchinfo-like summary of a model: one row per node (or per group of nodes sharing a name prefix), with
//! shapes, parameters and multiply-accumulates, computed on tract's decluttered typed model.
//!
//! Definitions: parameters are the elements of the constant tensors (weights, biases) feeding the computing
//! nodes, each constant counted once; scalar constants (clip bounds, the `+3` of a hard-sigmoid) are
//! hyper-parameters, not weights, and are left out. Multiply-accumulates are counted for convolutions
//! (`output elements × input channels per group × kernel height × kernel width`) and matrix products
//! (`output elements × summed dimension`); element-wise ops are not counted, as in torchinfo.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tract_core::internal::*;
use tract_core::ops::cnn::Conv;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::konst::Const;

use lookout_models::{load_model_file, ModelFileError};

/// What can go wrong inspecting a model.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The model file could not be loaded.
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    /// tract failed while walking the loaded model.
    #[error("{}: cannot summarise the model: {reason}", path.display())]
    Summary {
        /// The file.
        path: PathBuf,
        /// tract's message.
        reason: String,
    },
}

/// One row of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRow {
    /// Node name, or the shared name prefix of a group.
    pub name: String,
    /// Op name, or `N ops` for a group.
    pub op: String,
    /// Shape of the first input of the (first) node.
    pub input_shape: Vec<usize>,
    /// Shape of the output of the (last) node.
    pub output_shape: Vec<usize>,
    /// Parameters of the row.
    pub params: u64,
    /// Multiply-accumulates of the row.
    pub macs: u64,
    /// Number of model nodes in the row.
    pub nodes: usize,
}

/// The whole summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// The model file.
    pub model: PathBuf,
    /// Input shape the shapes were computed for.
    pub input_shape: Vec<usize>,
    /// The rows, in evaluation order.
    pub rows: Vec<LayerRow>,
    /// All parameters.
    pub total_params: u64,
    /// All multiply-accumulates.
    pub total_macs: u64,
    /// Bytes of parameter storage.
    pub param_bytes: u64,
    /// Parameter storage in MB (10^6 bytes, as torchinfo).
    pub param_mb: f64,
}

fn concrete(fact: &TypedFact) -> Option<Vec<usize>> {
    fact.shape.as_concrete().map(|s| s.to_vec())
}

/// Loads a model file as a decluttered typed model, with the input shape given or, when absent, the model's
/// own with symbolic dimensions (the batch) set to 1.
pub fn load_for_inspect(
    path: &Path,
    input: Option<&[usize]>,
) -> Result<(TypedModel, Vec<usize>), InspectError> {
    let shape = match input {
        Some(shape) => shape.to_vec(),
        None => {
            let model = load_model_file(path, None, None)?;
            let fact = model.input_fact(0).map_err(|e| summary_error(path, e))?;
            fact.shape
                .iter()
                .map(|d| d.to_i64().map(|v| v as usize).unwrap_or(1))
                .collect()
        }
    };
    Ok((load_model_file(path, Some(&shape), None)?, shape))
}

fn summary_error(path: &Path, e: TractError) -> InspectError {
    InspectError::Summary {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    }
}

/// Parameters and MACs of one node, given the parameters its constant inputs hold.
fn node_macs(model: &TypedModel, node: &TypedNode) -> TractResult<u64> {
    let inputs = model.node_input_facts(node.id)?;
    let outputs = model.node_output_facts(node.id)?;
    let out_elems = |ix: usize| -> u64 {
        outputs
            .get(ix)
            .and_then(|f| concrete(f))
            .map_or(0, |s| s.iter().product::<usize>() as u64)
    };
    if let Some(conv) = node.op_as::<Conv>() {
        // Weights hold O × I/g × kh × kw: per output element, I/g × kh × kw multiply-adds.
        let weights = inputs
            .get(1)
            .and_then(|f| concrete(f))
            .map_or(0, |s| s.iter().product::<usize>() as u64);
        let out_channels = conv.output_channels().max(1) as u64;
        return Ok(out_elems(0) * (weights / out_channels));
    }
    if let Some(einsum) = node.op_as::<EinSum>() {
        // Every axis that is in an input but not the output is summed over.
        let mut summed = 1u64;
        for axis in einsum.axes.iter_all_axes() {
            if axis.outputs.iter().all(|o| o.is_empty()) {
                let size = axis
                    .inputs
                    .iter()
                    .enumerate()
                    .find_map(|(slot, positions)| {
                        let pos = *positions.first()?;
                        concrete(inputs.get(slot)?)?.get(pos).copied()
                    });
                summed *= size.unwrap_or(1) as u64;
            }
        }
        return Ok(out_elems(0) * summed);
    }
    Ok(0)
}

/// Summarises a typed model; `depth` groups rows by the first `depth` components of the node names.
pub fn summarize(
    model: &TypedModel,
    path: &Path,
    input_shape: &[usize],
    depth: Option<usize>,
) -> Result<ModelSummary, InspectError> {
    let err = |e: TractError| summary_error(path, e);
    let mut counted_consts = HashSet::new();
    let mut rows: Vec<(Vec<String>, LayerRow)> = Vec::new();
    let mut total_params = 0u64;
    let mut param_bytes = 0u64;
    let mut total_macs = 0u64;
    for id in model.eval_order().map_err(err)? {
        let node = model.node(id);
        if node.op_is::<Const>() || node.op_is::<tract_core::ops::source::TypedSource>() {
            continue;
        }
        let mut params = 0u64;
        for input in &node.inputs {
            let src = model.node(input.node);
            if let Some(konst) = src.op_as::<Const>() {
                let t = konst.val();
                if t.len() > 1 && counted_consts.insert(src.id) {
                    params += t.len() as u64;
                    param_bytes += (t.len() * t.datum_type().size_of()) as u64;
                }
            }
        }
        let macs = node_macs(model, node).map_err(err)?;
        total_params += params;
        total_macs += macs;
        let input_shape = node
            .inputs
            .first()
            .and_then(|o| model.outlet_fact(*o).ok())
            .and_then(concrete)
            .unwrap_or_default();
        let output_shape = model
            .outlet_fact(OutletId::new(id, 0))
            .ok()
            .and_then(concrete)
            .unwrap_or_default();
        let components = name_components(&node.name);
        rows.push((
            components,
            LayerRow {
                name: node.name.clone(),
                op: node.op().name().to_string(),
                input_shape,
                output_shape,
                params,
                macs,
                nodes: 1,
            },
        ));
    }
    let rows = match depth {
        Some(depth) => group_rows(rows, depth),
        None => rows.into_iter().map(|(_, r)| r).collect(),
    };
    Ok(ModelSummary {
        model: path.to_path_buf(),
        input_shape: input_shape.to_vec(),
        rows,
        total_params,
        total_macs,
        param_bytes,
        param_mb: param_bytes as f64 / 1e6,
    })
}

/// Name components: torch exports name nodes `/features/features.3/block/Conv`, tract adds `.suffix`es.
fn name_components(name: &str) -> Vec<String> {
    name.split(['/', '.'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Merges consecutive rows whose names share the first `depth` components.
fn group_rows(rows: Vec<(Vec<String>, LayerRow)>, depth: usize) -> Vec<LayerRow> {
    let mut out: Vec<(Vec<String>, LayerRow)> = Vec::new();
    for (components, row) in rows {
        let key: Vec<String> = components.into_iter().take(depth.max(1)).collect();
        match out.last_mut() {
            Some((last_key, last)) if *last_key == key => {
                last.nodes += 1;
                last.params += row.params;
                last.macs += row.macs;
                last.output_shape = row.output_shape;
                last.op = format!("{} ops", last.nodes);
                last.name = key.join("/");
            }
            _ => out.push((key, row)),
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

/// Loads and summarises a model file.
pub fn inspect_file(
    path: &Path,
    input: Option<&[usize]>,
    depth: Option<usize>,
) -> Result<ModelSummary, InspectError> {
    let (model, shape) = load_for_inspect(path, input)?;
    summarize(&model, path, &shape, depth)
}

fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Thousands separators, as torchinfo.
pub fn with_commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl ModelSummary {
    /// The summary as a text table.
    pub fn to_table(&self) -> String {
        let headers = [
            "Layer",
            "Op",
            "Input shape",
            "Output shape",
            "Params",
            "MACs",
        ];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    r.op.clone(),
                    shape_str(&r.input_shape),
                    shape_str(&r.output_shape),
                    if r.params == 0 {
                        "--".into()
                    } else {
                        with_commas(r.params)
                    },
                    if r.macs == 0 {
                        "--".into()
                    } else {
                        with_commas(r.macs)
                    },
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: &[String]| -> String {
            let mut s = String::new();
            for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
                if i >= 4 {
                    s.push_str(&format!("{c:>w$}  "));
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s.trim_end().to_string()
        };
        let total_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let rule = "=".repeat(total_width);
        let mut out = String::new();
        out.push_str(&format!(
            "{}  (input {})\n",
            self.model.display(),
            shape_str(&self.input_shape)
        ));
        out.push_str(&rule);
        out.push('\n');
        out.push_str(&line(&headers.map(String::from)));
        out.push('\n');
        out.push_str(&rule);
        out.push('\n');
        for row in &cells {
            out.push_str(&line(row));
            out.push('\n');
        }
        out.push_str(&rule);
        out.push('\n');
        out.push_str(&format!(
            "Total params: {}\nTotal MACs: {} ({:.2} G)\nParams size (MB): {:.2}\n",
            with_commas(self.total_params),
            with_commas(self.total_macs),
            self.total_macs as f64 / 1e9,
            self.param_mb
        ));
        out
    }
}

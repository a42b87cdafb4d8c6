//! Where a bundle's inference time goes: each node of the optimised tract plan timed as it runs, summed by
//! tract's op name and by kind (what a user can act on: convolutions as matrix products, depthwise
//! convolutions, pooling, element-wise work).
//!
//! The nodes are timed one by one on the calling thread, through tract's own `run_plan_with_eval` hook, so the
//! sum is the plan's work (with tract's thread pool, a matrix product's time is its wall time across threads).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tract_core::prelude::*;
use tract_linalg::multithread::multithread_tract_scope;

use crate::error::RuntimeError;
use crate::model::Model;

/// Time per op, summed over the profiled runs.
#[derive(Debug, Clone, Default)]
pub struct OpProfile {
    /// Runs profiled.
    pub runs: usize,
    /// By tract op name (`OptMatMul`, `DepthWise`, …): total time and nodes per run.
    pub by_op: BTreeMap<String, (Duration, usize)>,
    /// By node of the plan (its id): what it is and its total time, so the slowest layers can be named.
    pub by_node: BTreeMap<usize, NodeTime>,
}

/// One node of the plan and its time, summed over the profiled runs.
#[derive(Debug, Clone, Default)]
pub struct NodeTime {
    /// The node's name in the graph (the layer it came from, e.g. `blocks.5.0.conv_pw`).
    pub name: String,
    /// tract's op name.
    pub op: String,
    /// The shape of its first output, e.g. `1,240,28,28`.
    pub output_shape: String,
    /// The matrix-product kernel(s) tract runs it with (a matrix product's: e.g. `fma_mmm_f32_16x6`; several
    /// separated by `/` where tract picks one per shape at run time), empty for any other op: which kernel a
    /// slow layer got is the first question about it.
    pub kernel: String,
    /// Total time over the runs.
    pub time: Duration,
}

/// The coarse kind of a tract op, for a profile a user reads.
pub fn op_kind(op_name: &str) -> &'static str {
    let name = op_name.to_ascii_lowercase();
    if name.contains("depthwise") {
        "depthwise convolution"
    } else if name.contains("matmul")
        || name.contains("im2col")
        || name.contains("conv")
        || name.contains("pack")
    {
        "convolution / matrix product (pointwise and full convs, dense layers)"
    } else if name.contains("pool") || name.contains("reduce") {
        "pooling and reductions (squeeze-excite, global average)"
    } else if name.contains("const") || name.contains("source") {
        "inputs and constants"
    } else {
        "element-wise (activations, add, scale, casts, reshapes)"
    }
}

impl OpProfile {
    /// Totals by [`op_kind`], largest first: (kind, time per run, share of the plan's time).
    pub fn by_kind(&self) -> Vec<(&'static str, Duration, f64)> {
        let mut kinds: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for (name, (time, _)) in &self.by_op {
            *kinds.entry(op_kind(name)).or_default() += *time;
        }
        let total: Duration = kinds.values().sum();
        let runs = self.runs.max(1) as u32;
        let mut out: Vec<_> = kinds
            .into_iter()
            .map(|(kind, t)| {
                (
                    kind,
                    t / runs,
                    t.as_secs_f64() / total.as_secs_f64().max(1e-12),
                )
            })
            .collect();
        out.sort_by_key(|k| std::cmp::Reverse(k.1));
        out
    }

    /// The plan's time per run.
    pub fn total_per_run(&self) -> Duration {
        self.by_op.values().map(|(t, _)| *t).sum::<Duration>() / self.runs.max(1) as u32
    }

    /// The `n` slowest nodes, slowest first: (node, time per run).
    pub fn slowest_nodes(&self, n: usize) -> Vec<(&NodeTime, Duration)> {
        let runs = self.runs.max(1) as u32;
        let mut nodes: Vec<_> = self.by_node.values().map(|t| (t, t.time / runs)).collect();
        nodes.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        nodes.truncate(n);
        nodes
    }
}

impl Model {
    /// Runs one already preprocessed input through the plan with every node timed, adding to `profile`.
    pub fn profile_tensor(
        &mut self,
        input: &[f32],
        profile: &mut OpProfile,
    ) -> Result<(), RuntimeError> {
        let tensor = self.input_tensor(input)?;
        let mut times: Vec<(usize, Duration)> = Vec::new();
        let (state, executor) = self.state_and_executor();
        multithread_tract_scope(executor, || {
            state.run_plan_with_eval(
                tvec!(tensor.into_tvalue()),
                |ctx, op_state, node, inputs| {
                    let start = Instant::now();
                    let out = tract_core::plan::eval(ctx, op_state, node, inputs);
                    times.push((node.id, start.elapsed()));
                    out
                },
            )
        })
        .map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
        profile.runs += 1;
        let mut nodes: BTreeMap<String, usize> = BTreeMap::new();
        for (id, time) in times {
            let node = self.plan_node(id);
            let name = node.op().name().to_string();
            *nodes.entry(name.clone()).or_default() += 1;
            profile.by_op.entry(name.clone()).or_default().0 += time;
            let entry = profile.by_node.entry(id).or_insert_with(|| NodeTime {
                name: node.name.clone(),
                op: name,
                output_shape: node
                    .outputs
                    .first()
                    .map(|o| {
                        o.fact
                            .shape
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
                kernel: node
                    .op_as::<tract_core::ops::matmul::optimized::OptMatMul>()
                    .map(|op| {
                        op.mmm
                            .iter()
                            .map(|mmm| mmm.name().to_string())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default(),
                time: Duration::ZERO,
            });
            entry.time += time;
        }
        for (name, count) in nodes {
            if let Some(entry) = profile.by_op.get_mut(&name) {
                entry.1 = count;
            }
        }
        Ok(())
    }
}

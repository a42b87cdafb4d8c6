//! The rewrites `lookout_runtime::plan::optimize` makes after tract's optimiser:
//! - `RowBroadcast`, for the element-wise operations tract leaves on its generic broadcasting path (a
//!   per-channel operand repeated over a channel-last activation): it takes the cases it is for, and its results
//!   equal tract's own to the bit, in both operand orders and for every operation it takes;
//! - `ClampedDepthwise`, a depthwise convolution with the clip after it fused into its kernel: the same values as
//!   tract's plan, on one thread and on several, where the kernel takes the clamp and where it does not.

mod common;

use lookout_runtime::kernels::depthwise_c_takes_clamp;
use lookout_runtime::plan::optimize;
use proptest::prelude::*;
use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_core::ops::math;
use tract_core::ops::nn::DataFormat;
use tract_linalg::multithread::{multithread_tract_scope, Executor};

#[derive(Debug, Clone, Copy)]
enum Operation {
    Mul,
    Add,
    Sub,
    Min,
    Max,
}

impl Operation {
    fn op(self) -> TypedBinOp {
        match self {
            Operation::Mul => math::mul(),
            Operation::Add => math::add(),
            Operation::Sub => math::sub(),
            Operation::Min => math::min(),
            Operation::Max => math::max(),
        }
    }

    fn apply(self, x: f32, y: f32) -> f32 {
        match self {
            Operation::Mul => x * y,
            Operation::Add => x + y,
            Operation::Sub => x - y,
            Operation::Min => x.min(y),
            Operation::Max => x.max(y),
        }
    }
}

/// The shared values, four times as spread: a depthwise sum of them crosses a clip's bounds (0 to 6) on both
/// sides, so a clamp that forgets either shows.
fn values(n: usize, seed: u64) -> Vec<f32> {
    common::values(n, seed).iter().map(|v| 4.0 * v).collect()
}

/// `big` (shape `rows × channels`, as `[1, h, w, c]`) and `small` (`[1, 1, 1, c]`) through `operation`,
/// `small` first when `small_first`. Returns the model.
fn model(
    operation: Operation,
    h: usize,
    w: usize,
    c: usize,
    small_first: bool,
) -> TractResult<TypedModel> {
    let mut model = TypedModel::default();
    let big = model.add_source("big", f32::fact([1, h, w, c]))?;
    let small = model.add_source("small", f32::fact([1, 1, 1, c]))?;
    let inputs = if small_first {
        [small, big]
    } else {
        [big, small]
    };
    let out = model.wire_node("op", operation.op(), &inputs)?;
    model.select_output_outlets(&out)?;
    Ok(model)
}

fn run(model: TypedModel, big: &Tensor, small: &Tensor) -> TractResult<Vec<f32>> {
    let plan = model.into_runnable()?;
    let out = plan.run(tvec![
        big.clone().into_tvalue(),
        small.clone().into_tvalue()
    ])?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

fn op_names(model: &TypedModel) -> Vec<String> {
    model
        .nodes()
        .iter()
        .map(|n| n.op.name().to_string())
        .collect()
}

fn check(
    operation: Operation,
    h: usize,
    w: usize,
    c: usize,
    small_first: bool,
    seed: u64,
) -> TractResult<Vec<String>> {
    let big = Tensor::from_shape(&[1, h, w, c], &values(h * w * c, seed))?;
    let small = Tensor::from_shape(&[1, 1, 1, c], &values(c, seed + 1))?;
    let ours = optimize(model(operation, h, w, c, small_first)?)?;
    let names = op_names(&ours);
    let tracts = model(operation, h, w, c, small_first)?.into_optimized()?;
    let got = run(ours, &big, &small)?;
    let want = run(tracts, &big, &small)?;
    ensure!(got.len() == h * w * c);
    for (i, (g, t)) in got.iter().zip(&want).enumerate() {
        let (x, y) = (
            big.try_as_plain_ram()?.as_slice::<f32>()?[i],
            small.try_as_plain_ram()?.as_slice::<f32>()?[i % c],
        );
        let reference = if small_first {
            operation.apply(y, x)
        } else {
            operation.apply(x, y)
        };
        ensure!(
            g.to_bits() == t.to_bits() && g.to_bits() == reference.to_bits(),
            "{operation:?} value {i}: ours {g}, tract's {t}, reference {reference} ({names:?})"
        );
    }
    Ok(names)
}

/// 120 channels are a multiple of no vector width tract checks against (16, 32 or 64 elements), so tract leaves
/// this product on its generic path everywhere, and the rewrite must take it: a squeeze-and-excitation scale.
#[test]
fn a_per_channel_scale_tract_leaves_generic_is_rewritten() {
    for small_first in [false, true] {
        let names = check(Operation::Mul, 14, 14, 120, small_first, 7).unwrap();
        assert!(
            names.iter().any(|n| n == "RowBroadcast(Mul)"),
            "not rewritten: {names:?}"
        );
        assert!(!names.iter().any(|n| n == "Mul"), "left generic: {names:?}");
    }
    // Sub in the other order is the flipped operation on the larger operand.
    let names = check(Operation::Sub, 7, 7, 120, true, 9).unwrap();
    assert!(names.iter().any(|n| n == "RowBroadcast(SubF)"), "{names:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every operation, both operand orders, channel counts that are and are not multiples of a vector width:
    /// the same values as tract's plan to the bit, and no generic broadcast left behind.
    #[test]
    fn the_same_values_as_tracts_plan(
        operation in prop_oneof![
            Just(Operation::Mul), Just(Operation::Add), Just(Operation::Sub),
            Just(Operation::Min), Just(Operation::Max),
        ],
        h in 1usize..9,
        w in 1usize..9,
        c in 1usize..300,
        small_first: bool,
        seed: u64,
    ) {
        let names = check(operation, h, w, c, small_first, seed)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let generic = ["Mul", "Add", "Sub", "Min", "Max"];
        prop_assert!(
            !names.iter().any(|n| generic.contains(&n.as_str())) || h * w == 1,
            "a generic broadcast is left: {:?}", names
        );
    }
}

/// A channel-last depthwise convolution (`k × k`, `stride`, same padding) followed by a clip to `low..=high`
/// (tract's `max` then `min` by constants, as a ReLU6 is exported). The output is the clip's.
fn depthwise_clip_model(
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    (low, high): (f32, f32),
    seed: u64,
) -> TractResult<TypedModel> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, h, w, c]))?;
    let kernel = model.add_const(
        "k",
        Tensor::from_shape(&[c, 1, k, k], &values(c * k * k, seed))?,
    )?;
    let bias = model.add_const("b", Tensor::from_shape(&[c], &values(c, seed + 1))?)?;
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NHWC,
            kernel_shape: tvec!(k, k),
            padding: PaddingSpec::SameUpper,
            dilations: None,
            strides: Some(tvec!(stride, stride)),
            input_channels: c,
            output_channels: c,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: c,
        q_params: None,
    };
    let y = model.wire_node("dw", conv, &[x, kernel, bias])?;
    let low = model.add_const("low", Tensor::from_shape(&[1, 1, 1, 1], &[low])?)?;
    let high = model.add_const("high", Tensor::from_shape(&[1, 1, 1, 1], &[high])?)?;
    let low = model.wire_node("max", math::max(), &[y[0], low])?;
    let out = model.wire_node("min", math::min(), &[low[0], high])?;
    model.select_output_outlets(&out)?;
    Ok(model)
}

/// Runs `plan` on `x` under `threads` threads.
fn run_threads(plan: TypedModel, x: &Tensor, threads: usize) -> TractResult<Vec<f32>> {
    let plan = plan.into_runnable()?;
    let executor = if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    };
    let out = multithread_tract_scope(executor, || plan.run(tvec![x.clone().into_tvalue()]))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn check_clamped(
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    bounds: (f32, f32),
    threads: usize,
    seed: u64,
) -> TractResult<Clamped> {
    lookout_runtime::kernels::ensure_linked();
    let x = Tensor::from_shape(&[1, h, w, c], &values(h * w * c, seed + 2))?;
    let ours = optimize(depthwise_clip_model(c, h, w, k, stride, bounds, seed)?)?;
    let names = op_names(&ours);
    let tracts = depthwise_clip_model(c, h, w, k, stride, bounds, seed)?.into_optimized()?;
    let got = run_threads(ours, &x, threads)?;
    let want = run_threads(tracts, &x, 1)?;
    ensure!(got.len() == want.len());
    let mut inside = 0;
    for (i, (g, t)) in got.iter().zip(&want).enumerate() {
        // Equal as numbers: a clamp by vector instructions may give 0.0 where the scalar one gives -0.0.
        ensure!(g == t, "value {i}: ours {g}, tract's {t} ({names:?})");
        inside += usize::from(*g > bounds.0 && *g < bounds.1);
    }
    Ok(Clamped {
        names,
        inside,
        values: got.len(),
    })
}

/// What [`check_clamped`] saw: the plan's operations, and how many of its values lay strictly between the bounds.
struct Clamped {
    names: Vec<String>,
    inside: usize,
    values: usize,
}

impl Clamped {
    /// Values on both sides of the bounds and between them, or the comparison shows little.
    fn assert_both_sides(&self) {
        assert!(
            self.inside > 0 && self.inside < self.values,
            "{} of {} inside",
            self.inside,
            self.values
        );
    }
}

/// Where this crate's `DepthwiseC` kernel is the one tract resolves (x86_64 with AVX2 and FMA), the clip after a
/// depthwise convolution is fused into it: no clip node is left in the plan.
#[test]
fn a_clip_after_a_depthwise_convolution_is_fused_where_the_kernel_takes_it() {
    let clamped = check_clamped(96, 14, 14, 3, 1, (0.0, 6.0), 1, 3).unwrap();
    clamped.assert_both_sides();
    let names = clamped.names;
    let fused = names.iter().any(|n| n == "DepthWiseConv+Clamp");
    assert_eq!(fused, depthwise_c_takes_clamp(), "{names:?}");
    if fused {
        assert!(
            !names.iter().any(|n| n.starts_with("OptBinChain")),
            "{names:?}"
        );
    }
}

/// Under two threads tract splits a depthwise convolution's channels across its pool (above 32768 values), whose
/// threads the offer of a clamp does not reach: their values must be clamped after, or a ReLU6 is lost.
#[test]
fn values_other_threads_computed_are_clamped_too() {
    for stride in [1, 2] {
        check_clamped(96, 28, 28, 3, stride, (0.0, 6.0), 2, 11)
            .unwrap()
            .assert_both_sides();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// 3×3 and 5×5, strides 1 and 2, channel counts that are and are not multiples of the vector width, bounds
    /// on both sides of zero, one thread and two (where other threads' values are clamped after): the same values
    /// as tract's plan.
    #[test]
    fn clamped_depthwise_gives_tracts_values(
        c in 1usize..70,
        h in 1usize..12,
        w in 1usize..12,
        k in prop_oneof![Just(3usize), Just(5)],
        stride in 1usize..3,
        bounds in prop_oneof![Just((0.0f32, 6.0f32)), Just((-1.0, 1.5)), Just((0.5, 2.0))],
        threads in 1usize..3,
        seed: u64,
    ) {
        check_clamped(c, h, w, k, stride, bounds, threads, seed)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }
}

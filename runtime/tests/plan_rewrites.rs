//! The rewrites `lookout_runtime::plan::optimize` makes after tract's optimiser:
//! - `RowBroadcast`, for the element-wise operations tract leaves on its generic broadcasting path (a
//!   per-channel operand repeated over a channel-last activation): it takes the cases it is for, and its results
//!   equal tract's own to the bit, in both operand orders and for every operation it takes;
//! - `ClampedDepthwise`, a depthwise convolution with the clip after it fused into its kernel: the same values as
//!   tract's plan, on one thread and on several, where the kernel takes the clamp and where it does not;
//! - `KInnerPack`, the packing of a channel-last activation for a matrix product (a pointwise convolution's),
//!   by this crate's vector transpose, panel by panel: the same values as tract's plan, for products that
//!   tract's own kernels run and products that this crate's kernel runs, activations as the product's A or B.

mod common;

use lookout_runtime::kernels::{depthwise_c_takes_clamp, pack_k_inner_f32, packs_k_inner_f32};
use lookout_runtime::plan::optimize;
use proptest::prelude::*;
use tract_core::internal::*;
use tract_core::ops::array::{Pad, PadMode};
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

/// What the plans of one model give for `x`: this crate's (`optimize`) on `threads` threads, with its
/// operations' names, and tract's own on one thread.
struct BothPlans {
    names: Vec<String>,
    ours: Vec<f32>,
    tracts: Vec<f32>,
}

fn both_plans(
    model: impl Fn() -> TractResult<TypedModel>,
    x: &Tensor,
    threads: usize,
) -> TractResult<BothPlans> {
    lookout_runtime::kernels::ensure_linked();
    let ours = optimize(model()?)?;
    let names = op_names(&ours);
    Ok(BothPlans {
        names,
        ours: run_threads(ours, x, threads)?,
        tracts: run_threads(model()?.into_optimized()?, x, 1)?,
    })
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
    let x = Tensor::from_shape(&[1, h, w, c], &values(h * w * c, seed + 2))?;
    let BothPlans {
        names,
        ours: got,
        tracts: want,
    } = both_plans(
        || depthwise_clip_model(c, h, w, k, stride, bounds, seed),
        &x,
        threads,
    )?;
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

/// A pointwise (1 × 1) convolution of a channel-last `[1, h, w, c_in]` activation to `c_out` channels, with a
/// bias: tract packs the activation for its matrix product with k (the input channels) innermost.
fn pointwise_model(
    h: usize,
    w: usize,
    c_in: usize,
    c_out: usize,
    seed: u64,
) -> TractResult<TypedModel> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, h, w, c_in]))?;
    let kernel = model.add_const(
        "k",
        Tensor::from_shape(&[c_out, c_in, 1, 1], &values(c_out * c_in, seed))?,
    )?;
    let bias = model.add_const("b", Tensor::from_shape(&[c_out], &values(c_out, seed + 1))?)?;
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NHWC,
            kernel_shape: tvec!(1, 1),
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: None,
            input_channels: c_in,
            output_channels: c_out,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
        q_params: None,
    };
    let y = model.wire_node("pointwise", conv, &[x, kernel, bias])?;
    model.select_output_outlets(&y)?;
    Ok(model)
}

/// The plan's operations and whether its values equal tract's plan's to the bit, on `threads` threads.
fn check_pointwise(
    h: usize,
    w: usize,
    c_in: usize,
    c_out: usize,
    threads: usize,
    seed: u64,
) -> TractResult<Vec<String>> {
    let x = Tensor::from_shape(&[1, h, w, c_in], &values(h * w * c_in, seed + 2))?;
    let BothPlans {
        names,
        ours: got,
        tracts: want,
    } = both_plans(|| pointwise_model(h, w, c_in, c_out, seed), &x, threads)?;
    ensure!(got.len() == h * w * c_out && want.len() == got.len());
    for (i, (g, t)) in got.iter().zip(&want).enumerate() {
        ensure!(
            g.to_bits() == t.to_bits(),
            "value {i}: ours {g}, tract's {t} ({names:?})"
        );
    }
    Ok(names)
}

/// Lite0's projections by their shapes, 56 × 56 positions from 144 channels to 24 (tract's own 16 × 12 kernel,
/// the activation its A, `PackedFormat`) and 28 × 28 from 240 to 40 (this crate's kernel, `StridedKMajor`):
/// packed by this crate wherever it packs, the same values as tract's plan. 4 × 4 positions from 256 channels
/// to 320, where the activation is this crate's kernel's B and its A (the weights) is not a `PackedFormat`, is
/// left to tract's packer: packed on demand, that B would be packed again for every tile.
#[test]
fn a_channel_last_activation_is_packed_by_lookout_where_it_can() {
    let left = check_pointwise(4, 4, 256, 320, 1, 5).unwrap();
    assert!(!left.iter().any(|n| n == "KInnerPack"), "{left:?}");
    for (side, c_in, c_out) in [(56, 144, 24), (28, 240, 40)] {
        let names = check_pointwise(side, side, c_in, c_out, 1, 5).unwrap();
        let packed_here = names.iter().any(|n| n == "KInnerPack");
        assert_eq!(
            packed_here,
            packs_k_inner_f32(),
            "{side}x{side}, {c_in} -> {c_out}: {names:?}"
        );
        if packed_here {
            assert!(
                !names.iter().any(|n| n == "OptMatMulPack"),
                "{side}x{side}, {c_in} -> {c_out}: {names:?}"
            );
        }
    }
}

/// What `pack_k_inner_f32` must write: `PackedFormat`'s layout, zeros past the last row and past `k`.
fn packed_reference(
    source: &[f32],
    row_stride: usize,
    k: usize,
    mn: usize,
    panel_len: usize,
) -> Vec<f32> {
    let mut packed = vec![0.0; mn.div_ceil(16) * panel_len];
    for row in 0..mn {
        for step in 0..k {
            packed[(row / 16) * panel_len + step * 16 + row % 16] = source[row * row_stride + step];
        }
    }
    packed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    /// Shapes that are and are not multiples of 16 positions or 16 channels, down to one of each, one thread
    /// and two: the same values as tract's plan (which packs the same panels its own way).
    #[test]
    fn packing_by_lookout_gives_tracts_values(
        h in 1usize..10,
        w in 1usize..10,
        c_in in 1usize..200,
        c_out in 1usize..100,
        threads in 1usize..3,
        seed: u64,
    ) {
        check_pointwise(h, w, c_in, c_out, threads, seed)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }

    /// The transpose itself, on rows further apart than `k` and panels longer than `k` steps: every value
    /// where `PackedFormat` puts it, zeros in the padding (the kernels compute on it).
    #[test]
    fn the_transpose_lays_out_panels_as_tract_does(
        k in 1usize..80,
        mn in 1usize..70,
        gap in 0usize..5,
        padding in 0usize..40,
        seed: u64,
    ) {
        let row_stride = k + gap;
        let panel_len = k * 16 + padding;
        let source = values(mn * row_stride, seed);
        let untouched = f32::from_bits(0x7fc0_dead);
        let mut packed = vec![untouched; mn.div_ceil(16) * panel_len];
        if pack_k_inner_f32(&source, row_stride, k, mn, &mut packed, panel_len) {
            let want = packed_reference(&source, row_stride, k, mn, panel_len);
            for (i, (g, w)) in packed.iter().zip(&want).enumerate() {
                prop_assert!(g.to_bits() == w.to_bits(), "value {}: {} instead of {}", i, g, w);
            }
        } else {
            prop_assert!(!packs_k_inner_f32());
            prop_assert!(
                packed.iter().all(|v| v.to_bits() == untouched.to_bits()),
                "written where it cannot pack"
            );
        }
    }
}

/// What follows a stem convolution in [`stem_model`].
#[derive(Debug, Clone, Copy)]
enum Activation {
    None,
    /// `max(x, 0)` then `min(x, 6)`, as a ReLU6 is exported.
    Relu6,
    /// `x - 0.5` then `max(x, 0)`: an operation whose operands do not commute.
    ShiftedRelu,
}

/// A convolution of a channel-first `[1, c_in, h, w]` input (`k × k` taps, `stride`, "same" padding, which
/// tract applies as a `Pad` before its im2col, after the input only where the stride is 2 and the size even) to
/// `c_out` channels with a bias, then `activation`: a backbone's stem.
#[allow(clippy::too_many_arguments)]
fn stem_model(
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    activation: Activation,
    seed: u64,
) -> TractResult<TypedModel> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([1, c_in, h, w]))?;
    let kernel = model.add_const(
        "k",
        Tensor::from_shape(&[c_out, c_in, k, k], &values(c_out * c_in * k * k, seed))?,
    )?;
    let bias = model.add_const("b", Tensor::from_shape(&[c_out], &values(c_out, seed + 1))?)?;
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec!(k, k),
            padding: PaddingSpec::SameUpper,
            dilations: None,
            strides: Some(tvec!(stride, stride)),
            input_channels: c_in,
            output_channels: c_out,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
        q_params: None,
    };
    let mut y = model.wire_node("stem", conv, &[x, kernel, bias])?;
    let scalar = |model: &mut TypedModel, name: &str, v: f32| {
        model.add_const(name, Tensor::from_shape(&[1, 1, 1, 1], &[v])?)
    };
    match activation {
        Activation::None => {}
        Activation::Relu6 => {
            let low = scalar(&mut model, "low", 0.0)?;
            let high = scalar(&mut model, "high", 6.0)?;
            y = model.wire_node("max", math::max(), &[y[0], low])?;
            y = model.wire_node("min", math::min(), &[y[0], high])?;
        }
        Activation::ShiftedRelu => {
            let shift = scalar(&mut model, "shift", 0.5)?;
            let low = scalar(&mut model, "low", 0.0)?;
            y = model.wire_node("sub", math::sub(), &[y[0], shift])?;
            y = model.wire_node("max", math::max(), &[y[0], low])?;
        }
    }
    model.select_output_outlets(&y)?;
    Ok(model)
}

/// The plan's operations, having checked that its values equal tract's plan's (as numbers: a clip by vector
/// instructions may give 0.0 where another gives -0.0), on `threads` threads.
#[allow(clippy::too_many_arguments)]
fn check_stem(
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    activation: Activation,
    threads: usize,
    seed: u64,
) -> TractResult<Vec<String>> {
    let x = Tensor::from_shape(&[1, c_in, h, w], &values(c_in * h * w, seed + 2))?;
    let BothPlans {
        names,
        ours: got,
        tracts: want,
    } = both_plans(
        || stem_model(c_in, c_out, h, w, k, stride, activation, seed),
        &x,
        threads,
    )?;
    ensure!(
        got.len() == want.len() && got.len() == c_out * h.div_ceil(stride) * w.div_ceil(stride)
    );
    for (i, (g, t)) in got.iter().zip(&want).enumerate() {
        ensure!(g == t, "value {i}: ours {g}, tract's {t} ({names:?})");
    }
    Ok(names)
}

/// Lite0's stem by its shape (3 channels to 32, 3 × 3, stride 2, an even input: padded after), on a smaller
/// frame: tract's padding becomes a `ZeroPad`, the clip after the reshape of the product's output is fused
/// into the product (no element-wise pass left), and the im2col panels are packed by vector where this crate
/// packs (x86_64 with AVX-512F); the same values as tract's plan.
#[test]
fn a_stem_is_padded_clipped_and_packed_by_lookout() {
    for activation in [Activation::Relu6, Activation::ShiftedRelu] {
        let names = check_stem(3, 32, 64, 64, 3, 2, activation, 1, 7).unwrap();
        assert!(names.iter().any(|n| n == "ZeroPad"), "{names:?}");
        assert!(!names.iter().any(|n| n == "Pad"), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("OptBinChain")),
            "{activation:?}: {names:?}"
        );
        assert_eq!(
            names.iter().any(|n| n == "VectorIm2col"),
            packs_k_inner_f32(),
            "{names:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Convolutions through im2col of every stride up to 3 (panels that wrap rows, short last panels, strides
    /// the vector packing does not take), kernels of 1, 3 and 5 taps a side, with and without an activation
    /// after, on one thread and two: the same values as tract's plan.
    #[test]
    fn stems_give_tracts_values(
        c_in in 1usize..5,
        c_out in 1usize..40,
        h in 1usize..40,
        // Up to rows of 16 positions or more at a stride of 2 and of 3.
        w in 1usize..72,
        k in prop::sample::select(vec![1usize, 3, 5]),
        stride in 1usize..4,
        activation in prop::sample::select(vec![Activation::None, Activation::Relu6, Activation::ShiftedRelu]),
        threads in 1usize..3,
        seed: u64,
    ) {
        check_stem(c_in, c_out, h, w, k, stride, activation, threads, seed)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }

    /// Zero padding of tensors of one to four axes, with and without padding on each side of each axis: the
    /// rewrite takes every padding tract's plan keeps, and pads as tract's `Pad` does, to the bit.
    #[test]
    fn zero_padding_gives_tracts_values(
        shape in prop::collection::vec(1usize..6, 1..5),
        pads in prop::collection::vec((0usize..3, 0usize..3), 4),
        seed: u64,
    ) {
        let pads: Vec<(usize, usize)> = pads[..shape.len()].to_vec();
        let model = || -> TractResult<TypedModel> {
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(&shape))?;
            let pad = Pad { pads: pads.clone(), mode: PadMode::Constant(Arc::new(0f32.into())) };
            let y = model.wire_node("pad", pad, &[x])?;
            model.select_output_outlets(&y)?;
            Ok(model)
        };
        let x = Tensor::from_shape(&shape, &values(shape.iter().product(), seed))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let both = both_plans(model, &x, 1).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let names = both.names;
        // Padding by nothing leaves no padding in tract's plan.
        let padded = pads.iter().any(|&(before, after)| before + after > 0);
        prop_assert_eq!(names.iter().any(|n| n == "ZeroPad"), padded, "{:?}", names);
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&both.ours), bits(&both.tracts));
    }
}

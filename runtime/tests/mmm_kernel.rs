//! The matrix-product kernels `lookout-runtime` registers for AVX-512 (`lookout_avx512_mmm_f32_16x16`, `16x24`,
//! `16x14` and `16x7`) and for AVX2 + FMA (`lookout_fma_mmm_f32_8x8`), each run by
//! tract-linalg itself (packing, full and border tiles, fused operations) on random products, against tract's
//! own kernel of the same instruction set on the same inputs (the same results to the bit: both sum the products of k in order, one
//! fused multiply-add each) and against a plain reference in f64. Outputs in every layout the kernel stores
//! differently: rows contiguous (channel-first), columns contiguous (channel-last), neither; A stored so that
//! the kernel reads it in place (k-major, through tract's `StridedKMajor` view) or packed.
#![cfg(target_arch = "x86_64")]

mod common;

use common::values;
use proptest::prelude::*;
use tract_core::prelude::*;
use tract_linalg::mmm::{AsInputValue, FusedSpec, MatMatMul};
use tract_linalg::strided_panel::StridedPanelInput;
use tract_linalg::BinOp;

const OURS: &str = "lookout_avx512_mmm_f32_16x16";
const AVX512_OURS: [&str; 4] = [
    OURS,
    "lookout_avx512_mmm_f32_16x24",
    "lookout_avx512_mmm_f32_16x14",
    "lookout_avx512_mmm_f32_16x7",
];
const AVX2_OURS: &str = "lookout_fma_mmm_f32_8x8";
/// Each of our kernels, with the kernel of tract's that it must match to the bit.
const ALL_OURS: [(&str, &str); 5] = [
    (AVX512_OURS[0], "avx512_mmm_f32_16x12"),
    (AVX512_OURS[1], "avx512_mmm_f32_16x12"),
    (AVX512_OURS[2], "avx512_mmm_f32_16x12"),
    (AVX512_OURS[3], "avx512_mmm_f32_16x12"),
    (AVX2_OURS, "fma_mmm_f32_16x6"),
];

fn runnable(name: &str) -> Option<Box<dyn MatMatMul>> {
    lookout_runtime::kernels::ensure_linked();
    tract_linalg::mmm_routines::runnable_for(&tract_linalg::isa::native())
        .into_iter()
        .find(|kernel| kernel.name() == name)
}

/// Registered on every x86_64 build, runnable exactly where the CPU offers their instruction set (AVX-512F;
/// AVX2 and FMA).
#[test]
fn the_kernels_are_registered_and_run_where_their_instructions_do() {
    use tract_linalg::isa::Isa;
    lookout_runtime::kernels::ensure_linked();
    let isa = tract_linalg::isa::native();
    let avx512 = isa.has(Isa::X86_64Avx512f);
    let avx2 = isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma);
    for (name, _) in ALL_OURS {
        assert!(
            tract_linalg::mmm_routines::declared().any(|routine| (routine.make)().name() == name),
            "{name} is not in tract-linalg's kernel registry"
        );
        let expected = if AVX512_OURS.contains(&name) {
            avx512
        } else {
            avx2
        };
        assert_eq!(
            runnable(name).is_some(),
            expected,
            "{name}, AVX-512F here: {avx512}, AVX2 + FMA: {avx2}"
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Row i at i * n: a channel-last output whose rows are positions (columns contiguous).
    RowMajor,
    /// Column j at j * m: rows contiguous.
    ColumnMajor,
    /// Neither contiguous.
    Strided,
}

impl Layout {
    /// (row stride, column stride, elements) in f32 items.
    fn strides(self, m: usize, n: usize) -> (usize, usize, usize) {
        match self {
            Layout::RowMajor => (n, 1, m * n),
            Layout::ColumnMajor => (1, m, m * n),
            Layout::Strided => (2 * n + 3, 2, m * (2 * n + 3)),
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    layout: Layout,
    per_row_add: bool,
    per_col_mul: bool,
    add_unicast: bool,
    clip: bool,
    leaky: bool,
    /// A stored k-major (`[k, m]`, its m values contiguous: a channel-first activation), which the kernel's
    /// `StridedKMajor` packing reads in place, instead of `[m, k]`, which it packs.
    a_k_major: bool,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..70,
        prop_oneof![1usize..40, 100usize..400],
        1usize..70,
        prop_oneof![
            Just(Layout::RowMajor),
            Just(Layout::ColumnMajor),
            Just(Layout::Strided)
        ],
        any::<[bool; 6]>(),
        any::<u64>(),
    )
        .prop_map(|(m, k, n, layout, ops, seed)| Case {
            m,
            k,
            n,
            layout,
            per_row_add: ops[0],
            per_col_mul: ops[1],
            add_unicast: ops[2],
            clip: ops[3],
            leaky: ops[4],
            a_k_major: ops[5],
            seed,
        })
}

struct Inputs {
    a: Tensor,
    /// `a` transposed: `[k, m]`.
    a_t: Tensor,
    b: Tensor,
    row: Tensor,
    col: Tensor,
    unicast: Tensor,
}

impl Inputs {
    fn new(case: &Case) -> TractResult<Inputs> {
        let (m, k, n) = (case.m, case.k, case.n);
        let (_, _, len) = case.layout.strides(m, n);
        let a = values(m * k, case.seed);
        let a_t: Vec<f32> = (0..k * m).map(|at| a[(at % m) * k + at / m]).collect();
        Ok(Inputs {
            a: Tensor::from_shape(&[m, k], &a)?,
            a_t: Tensor::from_shape(&[k, m], &a_t)?,
            b: Tensor::from_shape(&[k, n], &values(k * n, case.seed ^ 0x5151))?,
            row: Tensor::from_shape(&[m], &values(m, case.seed ^ 0x7777))?,
            col: Tensor::from_shape(&[n], &values(n, case.seed ^ 0x1234))?,
            unicast: Tensor::from_shape(&[len], &values(len, case.seed ^ 0x4242))?,
        })
    }
}

/// `kernel`'s output for `case`, through tract-linalg's own driver (`MatMatMul::run`).
fn run(kernel: &dyn MatMatMul, case: &Case, inputs: &Inputs) -> TractResult<Vec<f32>> {
    let (m, n) = (case.m, case.n);
    let (packing_a, packing_b) = &kernel.packings()[0];
    let a = if case.a_k_major {
        packing_a.prepare_one(&inputs.a_t, 0, 1)?
    } else {
        packing_a.prepare_one(&inputs.a, 1, 0)?
    };
    let b = packing_b.prepare_one(&inputs.b, 0, 1)?;
    let (row_stride, col_stride, len) = case.layout.strides(m, n);
    let mut output = Tensor::zero::<f32>(&[len])?;
    let (clip_max, clip_min, alpha) = (tensor0(0.5f32), tensor0(-0.25f32), tensor0(0.1f32));
    // SAFETY: the store spec describes `output` (and `inputs.unicast`, of the same length) with strides that
    // stay inside them for an m x n product.
    unsafe {
        let spec = kernel.c_from_data_and_strides(4, row_stride as isize, col_stride as isize);
        let mut ops = vec![FusedSpec::AddMatMul {
            a: AsInputValue::Borrowed(&*a),
            b: AsInputValue::Borrowed(&*b),
            packing: 0,
        }];
        if case.per_row_add {
            ops.push(FusedSpec::BinPerRow(inputs.row.view(), BinOp::Add));
        }
        if case.per_col_mul {
            ops.push(FusedSpec::BinPerCol(inputs.col.view(), BinOp::Mul));
        }
        if case.add_unicast {
            ops.push(FusedSpec::AddUnicast(spec.wrap(&inputs.unicast.view())));
        }
        if case.clip {
            ops.push(FusedSpec::BinScalar(&clip_max, BinOp::Min));
            ops.push(FusedSpec::BinScalar(&clip_min, BinOp::Max));
        }
        if case.leaky {
            ops.push(FusedSpec::LeakyRelu(&alpha));
        }
        ops.push(FusedSpec::Store(spec.wrap(&output.view_mut())));
        kernel.run(m, n, &ops)?;
    }
    Ok(output.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

/// The same in f64, value by value.
fn reference(case: &Case, inputs: &Inputs) -> TractResult<Vec<f64>> {
    let (m, k, n) = (case.m, case.k, case.n);
    let a = inputs.a.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let b = inputs.b.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let row = inputs.row.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let col = inputs.col.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let unicast = inputs
        .unicast
        .try_as_plain_ram()?
        .as_slice::<f32>()?
        .to_vec();
    let (row_stride, col_stride, len) = case.layout.strides(m, n);
    let mut out = vec![0f64; len];
    for i in 0..m {
        for j in 0..n {
            let at = i * row_stride + j * col_stride;
            let mut v: f64 = (0..k)
                .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                .sum();
            if case.per_row_add {
                v += row[i] as f64;
            }
            if case.per_col_mul {
                v *= col[j] as f64;
            }
            if case.add_unicast {
                v += unicast[at] as f64;
            }
            if case.clip {
                v = v.clamp(-0.25, 0.5);
            }
            if case.leaky && v <= 0.0 {
                v *= 0.1;
            }
            out[at] = v;
        }
    }
    Ok(out)
}

/// A k-major A (a channel-first activation) goes to the kernel as a view of the tensor, not a copy: the pack
/// this format exists to skip. A row-major A is packed.
#[test]
fn a_k_major_operand_is_read_in_place() {
    for ours in [OURS, AVX2_OURS].into_iter().filter_map(runnable) {
        a_k_major_is_a_view(&*ours);
    }
}

fn a_k_major_is_a_view(ours: &dyn MatMatMul) {
    let (m, k) = (37, 5);
    let t = Tensor::from_shape(&[k, m], &values(k * m, 7)).unwrap();
    let a = ours.packings()[0].0.prepare_one(&t, 0, 1).unwrap();
    let view = a.downcast_ref::<StridedPanelInput>().map(|a| a.is_view());
    assert_eq!(view, Some(true), "{a}");
    let t = Tensor::from_shape(&[m, k], &values(k * m, 7)).unwrap();
    let a = ours.packings()[0].0.prepare_one(&t, 1, 0).unwrap();
    let view = a.downcast_ref::<StridedPanelInput>().map(|a| a.is_view());
    assert_eq!(view, Some(false), "{a}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn products_match_tracts_own_kernel_to_the_bit(case in cases(), which in 0..ALL_OURS.len()) {
        let (name, tracts) = ALL_OURS[which];
        let (Some(ours), Some(tracts)) = (runnable(name), runnable(tracts)) else {
            return Ok(());
        };
        let inputs = Inputs::new(&case).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let found = run(&*ours, &case, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = run(&*tracts, &case, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reference = reference(&case, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (at, ((f, e), r)) in found.iter().zip(&expected).zip(&reference).enumerate() {
            prop_assert_eq!(f.to_bits(), e.to_bits(), "{} at {}: ours {} tract's {}", name, at, f, e);
            // Sums of k products of values under 1 in magnitude, rounded k times in f32.
            let tolerance = 1e-6 * (case.k as f64 + 4.0);
            prop_assert!((*f as f64 - r).abs() <= tolerance, "at {}: ours {} reference {}", at, f, r);
        }
    }
}

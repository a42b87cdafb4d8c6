//! f32 matrix-product kernels that store their tiles a vector at a time: for AVX-512, 16 rows by 16, 24, 14 or 7
//! columns ([`KERNELS`]); for AVX2 + FMA, 8 rows by 8 columns ([`AVX2_NAME`]). One code, generic over the
//! columns and over the instruction set's vectors ([`Lanes`]).
//!
//! tract-linalg 0.23.9's AVX-512 kernels store every value of a tile on its own (`vextractps` in each
//! `avx512_mmm_f32_*.S.j2`, whatever the output's layout). A layer with few multiply-adds a value is bound by
//! those stores: Lite0's first expansion (96 channels from 16, over 112 × 112 positions) writes 1.2 M values for
//! 16 multiply-adds each, and ran about twice onnxruntime's time in every tile tract has. These kernels compute
//! a tile as tract's kernels do (one 512-bit accumulator per column, one FMA per column and step of k, so the
//! same sums to the bit) and store it with whole-vector writes: columns as they are when the rows of the output
//! are contiguous, rows after an in-register transpose (16 columns at a time) when its columns are (a
//! channel-last convolution's output, the positions being the rows); a layout with neither falls back to single
//! values.
//!
//! Their A operand (the one read a vector a step) is in tract's `StridedKMajor` format: where A is an activation
//! whose positions are contiguous, tract hands the kernel a view of it instead of a packed copy.
//!
//! Each is a [`DynKernel`] submitted to tract-linalg's own kernel registry (`MmmRoutine`, the one its kernel
//! macros fill), so tract packs its operands and drives it like any of its own kernels; only this crate's Intel
//! AVX-512 tier and AMD AVX2 tier name them (their boost of -1 keeps tract's own rules on its own kernels).

use std::arch::x86_64::*;
use std::sync::LazyLock;

use tract_linalg::isa::{Arch, Isa, IsaReq};
use tract_linalg::mmm::{DynKernel, FusedKerSpec, OutputStoreKer};
use tract_linalg::mmm_routines::MmmRoutine;
use tract_linalg::pack::Packing;
use tract_linalg::strided_panel::StridedKMajor;

use crate::kernels::StridedPanelDesc;

/// Rows of an AVX-512 tile (the packed A panel's width: one 512-bit vector).
pub const MR: usize = 16;
/// Columns of the square AVX-512 tile, which its in-register transpose works on.
pub const NR: usize = 16;

/// This crate's AVX-512 kernels, by name and columns, in the order the Intel tier prefers them among tiles that
/// fit a product equally well: 16 × 16 first (the one measured on most shapes), then the wider. 24 columns fit
/// the projections to 24 channels (EfficientNet-Lite0's blocks 1 and 2, where 16 fills tiles to 0.75 and tract's
/// 16 × 12 stores value by value); 14 the layers over 14 × 14 positions (196 columns) and projections to 40
/// channels (0.95, where 16 fills 0.83); 7 the layers over 7 × 7 positions (49, where 16 fills 0.77 and tract's
/// 32 × 5 stores value by value). 24 accumulators, A's vector and a broadcast take 26 of the 32 vector registers.
pub const KERNELS: [(&str, usize); 4] = [
    (NAME, NR),
    ("lookout_avx512_mmm_f32_16x24", 24),
    ("lookout_avx512_mmm_f32_16x14", 14),
    ("lookout_avx512_mmm_f32_16x7", 7),
];

/// The 16 × 16 kernel's name, as tract lists it and as the Intel tier answers with it.
pub const NAME: &str = "lookout_avx512_mmm_f32_16x16";

/// Rows of an AVX2 tile (one 256-bit vector).
pub const AVX2_MR: usize = 8;

/// This crate's AVX2 + FMA kernel: 8 rows by 8 columns, the square its in-register transpose works on. tract's
/// FMA kernels store value by value too (`vextractps` in each `fma_mmm_f32_*.S.j2`).
pub const AVX2_NAME: &str = "lookout_fma_mmm_f32_8x8";

/// Registers the AVX-512 kernel `KERNELS[$index]` into tract-linalg's registry.
macro_rules! register {
    ($kernel:ident, $index:literal) => {
        static $kernel: LazyLock<DynKernel<MR, { KERNELS[$index].1 }, f32>> = LazyLock::new(|| {
            kernel::<MR, { KERNELS[$index].1 }>(
                KERNELS[$index].0,
                run512::<{ KERNELS[$index].1 }>,
                IsaReq::ANY.needing(&[Isa::X86_64Avx512f]),
            )
        });
        inventory::submit! {
            MmmRoutine { make: || $kernel.mmm() }
        }
    };
}

register!(KERNEL_16, 0);
register!(KERNEL_24, 1);
register!(KERNEL_14, 2);
register!(KERNEL_7, 3);

static KERNEL_AVX2_8: LazyLock<DynKernel<AVX2_MR, AVX2_MR, f32>> = LazyLock::new(|| {
    kernel::<AVX2_MR, AVX2_MR>(
        AVX2_NAME,
        run256::<AVX2_MR>,
        IsaReq::ANY.needing(&[Isa::X86_64Avx2, Isa::X86_64Fma]),
    )
});
inventory::submit! {
    MmmRoutine { make: || KERNEL_AVX2_8.mmm() }
}

/// The kernel of `R` rows and `N` columns running `run`, as tract registers it, for CPUs that offer `needs`.
fn kernel<const R: usize, const N: usize>(
    name: &'static str,
    run: unsafe fn(&[FusedKerSpec<f32>]) -> isize,
    needs: IsaReq,
) -> DynKernel<R, N, f32> {
    // B's panels on cache lines: each step of k reads B's values from one or two lines.
    let (a, b) = (f32::packing(R).align(64), f32::packing(N).align(64));
    let mut kernel = DynKernel::<R, N, f32>::new(name, run, a, b);
    // A (the operand whose R values a step load as one vector) in tract's `StridedKMajor` format instead of
    // packed: where A is an activation whose positions are contiguous (a channel-first input: Lite0's first
    // expansions and block 0's projection, whose input is 1.6 MB), tract's pack node hands over a view of it
    // and copies nothing; anything else it packs as before (R values a step). It stays the only packing, so
    // tract's einsum keeps its trivial path; B stays packed, which convolutions through im2col require.
    kernel.packings[0].0 = Box::new(StridedKMajor::new(R));
    kernel.arch = Some(Arch::X86_64);
    kernel
        .with_isa(needs)
        // Below tract's own kernels (boost 0 at the same level) wherever tract chooses by its generic rules:
        // only a tier naming this kernel runs it.
        .with_boost(|| -1)
}

/// Referenced from [`super::ensure_linked`] with the rest of this architecture's registrations.
pub fn anchor() -> *const () {
    run512::<NR> as *const ()
}

/// The AVX-512 kernel as tract calls it: a program of fused operations on one tile.
///
/// # Safety
/// tract-linalg's kernel contract: every pointer in `ops` valid for the tile it describes. The CPU must offer
/// AVX-512F (the registration requires it, so tract runs this kernel only there).
#[target_feature(enable = "avx512f")]
unsafe fn run512<const N: usize>(ops: &[FusedKerSpec<f32>]) -> isize {
    // SAFETY: the caller's contract; AVX-512F is required by the registration.
    unsafe { program::<Avx512, N>(ops) }
}

/// The AVX2 kernel as tract calls it.
///
/// # Safety
/// As [`run512`], on a CPU offering AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn run256<const N: usize>(ops: &[FusedKerSpec<f32>]) -> isize {
    // SAFETY: the caller's contract; AVX2 and FMA are required by the registration.
    unsafe { program::<Avx2, N>(ops) }
}

/// One instruction set's f32 vectors as the kernels use them: a vector holds one column of a tile (`LANES`
/// rows), and a square block of `LANES` vectors transposes in registers. Every function is inlined into a
/// kernel compiled for that instruction set ([`run512`], [`run256`]), and must be called only there.
pub(super) trait Lanes {
    type V: Copy;
    /// `LANES` vectors: a square block.
    type Block: Copy + AsRef<[Self::V]> + AsMut<[Self::V]>;
    const LANES: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn zero_block() -> Self::Block;
    unsafe fn splat(value: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// The first `valid` lanes (at most `LANES`) from `p`, zeros in the rest; the others are not read.
    unsafe fn load_first(p: *const f32, valid: usize) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Writes the first `valid` lanes (at most `LANES`) of `v` to `p`, nothing past them.
    unsafe fn store_first(p: *mut f32, v: Self::V, valid: usize);
    /// `a < b ? a : b`, as tract's kernels (`vminps`).
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, one rounding.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `x > 0 ? x : alpha * x`.
    unsafe fn leaky_relu(alpha: Self::V, x: Self::V) -> Self::V;
    /// Row `i` becomes column `i`.
    unsafe fn transpose(block: &mut Self::Block);
}

/// AVX-512F: 16 lanes.
pub(super) struct Avx512;

impl Lanes for Avx512 {
    type V = __m512;
    type Block = Tile;
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn zero_block() -> Tile {
        [_mm512_setzero_ps(); 16]
    }
    #[inline(always)]
    unsafe fn splat(value: f32) -> __m512 {
        _mm512_set1_ps(value)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: the caller's.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, valid: usize) -> __m512 {
        // SAFETY: the caller's; masked-off lanes are not read (AVX-512 masked loads suppress faults on them).
        unsafe { _mm512_maskz_loadu_ps(first_lanes(valid), p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: the caller's.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, v: __m512, valid: usize) {
        // SAFETY: the caller's.
        unsafe { _mm512_mask_storeu_ps(p, first_lanes(valid), v) }
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        _mm512_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn leaky_relu(alpha: __m512, x: __m512) -> __m512 {
        let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps());
        _mm512_mask_blend_ps(positive, _mm512_mul_ps(alpha, x), x)
    }
    #[inline(always)]
    unsafe fn transpose(block: &mut Tile) {
        // SAFETY: called from a kernel compiled for AVX-512F (the trait's contract).
        unsafe { transpose(block) }
    }
}

/// The lanes of the first `width` (at most 16) of a 512-bit vector.
#[inline(always)]
fn first_lanes(width: usize) -> __mmask16 {
    if width >= NR {
        0xffff
    } else {
        ((1u32 << width) - 1) as __mmask16
    }
}

/// AVX2 + FMA: 8 lanes.
pub(super) struct Avx2;

impl Lanes for Avx2 {
    type V = __m256;
    type Block = [__m256; 8];
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn zero_block() -> [__m256; 8] {
        [_mm256_setzero_ps(); 8]
    }
    #[inline(always)]
    unsafe fn splat(value: f32) -> __m256 {
        _mm256_set1_ps(value)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: the caller's.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, valid: usize) -> __m256 {
        // SAFETY: the caller's; `vmaskmovps` does not read (nor fault on) masked-off lanes.
        unsafe { _mm256_maskload_ps(p, super::first_lanes(valid)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the caller's.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, v: __m256, valid: usize) {
        // SAFETY: the caller's; masked-off lanes are not written.
        unsafe { _mm256_maskstore_ps(p, super::first_lanes(valid), v) }
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        _mm256_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn leaky_relu(alpha: __m256, x: __m256) -> __m256 {
        let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps());
        _mm256_blendv_ps(_mm256_mul_ps(alpha, x), x, positive)
    }
    #[inline(always)]
    unsafe fn transpose(block: &mut [__m256; 8]) {
        // SAFETY: called from a kernel compiled for AVX2 (the trait's contract).
        unsafe { transpose8(block) }
    }
}

/// A square AVX-512 tile: column `j` in `tile[j]`, its lane `i` the value of row `i`.
pub(super) type Tile = [__m512; NR];

/// A tile of `N` columns, each a vector of `L::LANES` rows.
type Columns<L, const N: usize> = [<L as Lanes>::V; N];

/// Runs tract's program of fused operations on one tile of `L::LANES` rows and `N` columns.
///
/// # Safety
/// tract-linalg's kernel contract; called only from a kernel compiled for `L`'s instruction set.
#[inline(always)]
unsafe fn program<L: Lanes, const N: usize>(ops: &[FusedKerSpec<f32>]) -> isize {
    // SAFETY (the whole body): the pointers come from tract for this tile, as the kernel contract says, and the
    // caller runs with `L`'s instruction set.
    unsafe {
        let zero = L::zero();
        let mut tile: Columns<L, N> = [zero; N];
        for op in ops {
            match *op {
                FusedKerSpec::Done => return 0,
                FusedKerSpec::Clear => tile = [zero; N],
                FusedKerSpec::LoadTile(column_major, _) => {
                    tile = load_column_major::<L, N>(column_major)
                }
                // tract's operand order: the scalar or vector first, the tile value second (`ScalarSub` is
                // `s - x`, `ScalarSubF` is `x - s`); `min(a, b)` is `a < b ? a : b`, as tract's.
                FusedKerSpec::ScalarMin(s) => scalar::<L, N>(&mut tile, s, |s, x| L::min(s, x)),
                FusedKerSpec::ScalarMax(s) => scalar::<L, N>(&mut tile, s, |s, x| L::max(s, x)),
                FusedKerSpec::ScalarAdd(s) => scalar::<L, N>(&mut tile, s, |s, x| L::add(s, x)),
                FusedKerSpec::ScalarMul(s) => scalar::<L, N>(&mut tile, s, |s, x| L::mul(s, x)),
                FusedKerSpec::ScalarSub(s) => scalar::<L, N>(&mut tile, s, |s, x| L::sub(s, x)),
                FusedKerSpec::ScalarSubF(s) => scalar::<L, N>(&mut tile, s, |s, x| L::sub(x, s)),
                FusedKerSpec::LeakyRelu(alpha) => {
                    scalar::<L, N>(&mut tile, alpha, |alpha, x| L::leaky_relu(alpha, x))
                }
                FusedKerSpec::PerRowMin(p) => per_row::<L, N>(&mut tile, p, |v, x| L::min(v, x)),
                FusedKerSpec::PerRowMax(p) => per_row::<L, N>(&mut tile, p, |v, x| L::max(v, x)),
                FusedKerSpec::PerRowAdd(p) => per_row::<L, N>(&mut tile, p, |v, x| L::add(v, x)),
                FusedKerSpec::PerRowMul(p) => per_row::<L, N>(&mut tile, p, |v, x| L::mul(v, x)),
                FusedKerSpec::PerRowSub(p) => per_row::<L, N>(&mut tile, p, |v, x| L::sub(v, x)),
                FusedKerSpec::PerRowSubF(p) => per_row::<L, N>(&mut tile, p, |v, x| L::sub(x, v)),
                FusedKerSpec::PerColMin(p) => per_col::<L, N>(&mut tile, p, |v, x| L::min(v, x)),
                FusedKerSpec::PerColMax(p) => per_col::<L, N>(&mut tile, p, |v, x| L::max(v, x)),
                FusedKerSpec::PerColAdd(p) => per_col::<L, N>(&mut tile, p, |v, x| L::add(v, x)),
                FusedKerSpec::PerColMul(p) => per_col::<L, N>(&mut tile, p, |v, x| L::mul(v, x)),
                FusedKerSpec::PerColSub(p) => per_col::<L, N>(&mut tile, p, |v, x| L::sub(v, x)),
                FusedKerSpec::PerColSubF(p) => per_col::<L, N>(&mut tile, p, |v, x| L::sub(x, v)),
                FusedKerSpec::AddRowColProducts(rows, columns) => {
                    let rows = L::load(rows);
                    for (j, column) in tile.iter_mut().enumerate() {
                        *column = L::fmadd(rows, L::splat(*columns.add(j)), *column);
                    }
                }
                FusedKerSpec::AddUnicast(other) => {
                    if other.item_size != 4 {
                        return 1;
                    }
                    let addend = load::<L, N>(&other);
                    for (column, add) in tile.iter_mut().zip(addend) {
                        *column = L::add(*column, add);
                    }
                }
                FusedKerSpec::Store(output) => {
                    if output.item_size != 4 {
                        return 1;
                    }
                    store::<L, N>(&output, &tile);
                }
                FusedKerSpec::AddMatMul { k, pa, pb, packing } => {
                    if packing != 0 {
                        return 1;
                    }
                    add_mat_mul::<L, N>(
                        &mut tile,
                        &*(pa as *const StridedPanelDesc),
                        pb as *const f32,
                        k,
                    );
                }
                // Integer requantisation: never fused into an f32 product.
                FusedKerSpec::QScale(..)
                | FusedKerSpec::RoundingShiftRight(..)
                | FusedKerSpec::ShiftLeft(..) => return 1,
            }
        }
    }
    0
}

#[inline(always)]
unsafe fn scalar<L: Lanes, const N: usize>(
    tile: &mut Columns<L, N>,
    s: f32,
    f: impl Fn(L::V, L::V) -> L::V,
) {
    // SAFETY: the caller runs with `L`'s instruction set.
    let s = unsafe { L::splat(s) };
    for column in tile.iter_mut() {
        *column = f(s, *column);
    }
}

#[inline(always)]
unsafe fn per_row<L: Lanes, const N: usize>(
    tile: &mut Columns<L, N>,
    p: *const f32,
    f: impl Fn(L::V, L::V) -> L::V,
) {
    // SAFETY: `p` holds one value per row of the tile (tract's contract).
    let v = unsafe { L::load(p) };
    for column in tile.iter_mut() {
        *column = f(v, *column);
    }
}

#[inline(always)]
unsafe fn per_col<L: Lanes, const N: usize>(
    tile: &mut Columns<L, N>,
    p: *const f32,
    f: impl Fn(L::V, L::V) -> L::V,
) {
    for (j, column) in tile.iter_mut().enumerate() {
        // SAFETY: `p` holds one value per column of the tile (tract's contract).
        *column = f(unsafe { L::splat(*p.add(j)) }, *column);
    }
}

/// `tile += A · B` over `k` steps: A's `L::LANES` values a step where its panel says (a short last panel of a
/// view loads only its valid lanes: the rest may lie past the activation), B's `N` from tract's packed panel.
#[inline(always)]
unsafe fn add_mat_mul<L: Lanes, const N: usize>(
    tile: &mut Columns<L, N>,
    a: &StridedPanelDesc,
    b: *const f32,
    k: usize,
) {
    // A local copy that LLVM keeps in registers (one per column) through the loop.
    let mut acc = *tile;
    let full = a.valid >= L::LANES;
    for step in 0..k {
        // SAFETY: the panels hold `k` steps (tract's contract for this kernel's packings); a short panel's
        // lanes past `valid` are not read.
        unsafe {
            let at = a.ptr.offset(step as isize * a.k_byte_stride) as *const f32;
            let column = if full {
                L::load(at)
            } else {
                L::load_first(at, a.valid)
            };
            let b = b.add(step * N);
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = L::fmadd(column, L::splat(*b.add(j)), *acc);
            }
        }
    }
    *tile = acc;
}

/// The tile stored column after column at `values` (`L::LANES` values each): tract's `LoadTile` layout.
#[inline(always)]
unsafe fn load_column_major<L: Lanes, const N: usize>(values: *const f32) -> Columns<L, N> {
    // SAFETY: `values` holds `L::LANES * N` f32 (tract's contract).
    std::array::from_fn(|j| unsafe { L::load(values.add(j * L::LANES)) })
}

/// The tile at `at` (f32), as columns.
#[inline(always)]
unsafe fn load<L: Lanes, const N: usize>(at: &OutputStoreKer) -> Columns<L, N> {
    let (rows, columns) = (at.row_byte_stride, at.col_byte_stride);
    let lanes = L::LANES;
    // SAFETY: `at` describes an `L::LANES` × N f32 tile (tract's contract).
    unsafe {
        let p = at.ptr as *const u8;
        let mut tile: Columns<L, N> = [L::zero(); N];
        if rows == 4 {
            for (j, column) in tile.iter_mut().enumerate() {
                *column = L::load(p.offset(j as isize * columns) as *const f32);
            }
        } else if columns == 4 {
            // Rows of `lanes` columns at a time (the last block to what is left), transposed.
            for first in (0..N).step_by(lanes) {
                let width = lanes.min(N - first);
                let mut block = L::zero_block();
                for (i, row) in block.as_mut().iter_mut().enumerate() {
                    let at = p.offset(i as isize * rows + first as isize * 4) as *const f32;
                    *row = L::load_first(at, width);
                }
                L::transpose(&mut block);
                tile[first..first + width].copy_from_slice(&block.as_ref()[..width]);
            }
        } else {
            let mut values = [[0f32; MR]; N];
            for (j, column) in values.iter_mut().enumerate() {
                for (i, value) in column.iter_mut().take(lanes).enumerate() {
                    *value = *(p.offset(i as isize * rows + j as isize * columns) as *const f32);
                }
            }
            for (column, values) in tile.iter_mut().zip(&values) {
                *column = L::load(values.as_ptr());
            }
        }
        tile
    }
}

/// Writes `tile` to `at` (f32) a vector at a time where one of its strides is contiguous.
#[inline(always)]
unsafe fn store<L: Lanes, const N: usize>(at: &OutputStoreKer, tile: &Columns<L, N>) {
    let (rows, columns) = (at.row_byte_stride, at.col_byte_stride);
    let lanes = L::LANES;
    // SAFETY: `at` describes an `L::LANES` × N f32 tile (tract's contract).
    unsafe {
        let p = at.ptr;
        if rows == 4 {
            for (j, column) in tile.iter().enumerate() {
                L::store(p.offset(j as isize * columns) as *mut f32, *column);
            }
        } else if columns == 4 {
            // `lanes` columns at a time transposed into rows, the last block's rows to what is left.
            for first in (0..N).step_by(lanes) {
                let width = lanes.min(N - first);
                let mut block = L::zero_block();
                block.as_mut()[..width].copy_from_slice(&tile[first..first + width]);
                L::transpose(&mut block);
                for (i, row) in block.as_ref().iter().enumerate() {
                    let at = p.offset(i as isize * rows + first as isize * 4) as *mut f32;
                    if width == lanes {
                        L::store(at, *row);
                    } else {
                        L::store_first(at, *row, width);
                    }
                }
            }
        } else {
            let mut values = [[0f32; MR]; N];
            for (column, stored) in values.iter_mut().zip(tile) {
                L::store(column.as_mut_ptr(), *stored);
            }
            for (j, column) in values.iter().enumerate() {
                for (i, value) in column.iter().take(lanes).enumerate() {
                    *(p.offset(i as isize * rows + j as isize * columns) as *mut f32) = *value;
                }
            }
        }
    }
}

/// Transposes an 8 × 8 f32 matrix held as eight 256-bit vectors, in registers: pairs interleaved (32-bit, then
/// 64-bit), then 128-bit halves exchanged.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(m: &mut [__m256; 8]) {
    let mut t = [_mm256_setzero_ps(); 8];
    for p in 0..4 {
        t[2 * p] = _mm256_unpacklo_ps(m[2 * p], m[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(m[2 * p], m[2 * p + 1]);
    }
    // t[4q + 0..4]: rows 4q..4q+4 interleaved by pairs; now 64-bit pairs across t[4q] / t[4q + 2] and
    // t[4q + 1] / t[4q + 3].
    let mut u = [_mm256_setzero_ps(); 8];
    for q in 0..2 {
        let b = 4 * q;
        u[b] = _mm256_shuffle_ps::<0x44>(t[b], t[b + 2]);
        u[b + 1] = _mm256_shuffle_ps::<0xEE>(t[b], t[b + 2]);
        u[b + 2] = _mm256_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
        u[b + 3] = _mm256_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
    }
    // u[4q + c], 128-bit half h, holds rows 4q..4q+4 of column 4h + c: join the halves of row groups 0 and 1.
    for c in 0..4 {
        m[c] = _mm256_permute2f128_ps::<0x20>(u[c], u[c + 4]);
        m[c + 4] = _mm256_permute2f128_ps::<0x31>(u[c], u[c + 4]);
    }
}

/// Transposes a 16 × 16 f32 matrix held as sixteen vectors, in registers: pairs of vectors interleaved
/// (32-bit, then 64-bit), then 128-bit lanes exchanged twice.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose(m: &mut Tile) {
    let mut t = [_mm512_setzero_ps(); 16];
    for p in 0..8 {
        t[2 * p] = _mm512_unpacklo_ps(m[2 * p], m[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(m[2 * p], m[2 * p + 1]);
    }
    // t[4q + 0..4]: from rows 4q..4q+4. Now 64-bit pairs across t[4q] / t[4q + 2] and t[4q + 1] / t[4q + 3].
    let mut u = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let b = 4 * q;
        u[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
        u[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
        u[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
    }
    // u[4q + c], lane group g (128 bits), holds rows 4q..4q+4 of column 4g + c. Exchange 128-bit lanes:
    // first between row groups q and q + 1 (pairs 0/1 and 2/3), then between 0/2 and 1/3.
    let mut v = [_mm512_setzero_ps(); 16];
    for half in 0..2 {
        let (x, y) = (8 * half, 8 * half + 4);
        for c in 0..4 {
            v[x + c] = _mm512_shuffle_f32x4::<0x88>(u[x + c], u[y + c]);
            v[y + c] = _mm512_shuffle_f32x4::<0xDD>(u[x + c], u[y + c]);
        }
    }
    for c in 0..8 {
        m[c] = _mm512_shuffle_f32x4::<0x88>(v[c], v[c + 8]);
        m[c + 8] = _mm512_shuffle_f32x4::<0xDD>(v[c], v[c + 8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_a_transpose() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let values: Vec<f32> = (0..256).map(|v| v as f32).collect();
        // SAFETY: AVX-512F checked above; the buffers hold 256 values.
        unsafe { check_transpose(&values) }
    }

    #[test]
    fn transpose8_is_a_transpose() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let values: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let mut m = [unsafe { _mm256_setzero_ps() }; 8];
        let mut out = [0f32; 64];
        // SAFETY: AVX2 checked above; the buffers hold 64 values.
        unsafe {
            for (i, row) in m.iter_mut().enumerate() {
                *row = _mm256_loadu_ps(values.as_ptr().add(8 * i));
            }
            transpose8(&mut m);
            for (i, row) in m.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *row);
            }
        }
        for i in 0..8 {
            for j in 0..8 {
                assert_eq!(out[8 * i + j], values[8 * j + i], "at ({i}, {j})");
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn check_transpose(values: &[f32]) {
        let mut m: Tile = [_mm512_setzero_ps(); 16];
        for (i, row) in m.iter_mut().enumerate() {
            *row = unsafe { _mm512_loadu_ps(values.as_ptr().add(16 * i)) };
        }
        transpose(&mut m);
        let mut out = [0f32; 256];
        for (i, row) in m.iter().enumerate() {
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *row) };
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[16 * i + j], values[16 * j + i], "at ({i}, {j})");
            }
        }
    }
}

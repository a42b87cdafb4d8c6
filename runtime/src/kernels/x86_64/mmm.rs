//! f32 matrix-product kernels for AVX-512 that store their tiles a vector at a time: 16 rows by 16, 24, 14 or 7
//! columns ([`KERNELS`]), one code generic over the columns.
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
//! macros fill), so tract packs its operands and drives it like any of its own kernels; only the Intel tier of
//! this crate names them (their boost of -1 keeps tract's own rules on its own kernels).

use std::arch::x86_64::*;
use std::sync::LazyLock;

use tract_linalg::isa::{Arch, Isa, IsaReq};
use tract_linalg::mmm::{DynKernel, FusedKerSpec, OutputStoreKer};
use tract_linalg::mmm_routines::MmmRoutine;
use tract_linalg::pack::Packing;
use tract_linalg::strided_panel::StridedKMajor;

use crate::kernels::StridedPanelDesc;

/// Rows of a tile (the packed A panel's width).
pub const MR: usize = 16;
/// Columns of the square tile, which the in-register transpose works on.
pub const NR: usize = 16;

/// This crate's kernels, by name and columns, in the order the Intel tier prefers them among tiles that fit a
/// product equally well: 16 × 16 first (the one measured on most shapes), then the wider. 24 columns fit the
/// projections to 24 channels (EfficientNet-Lite0's blocks 1 and 2, where 16 fills tiles to 0.75 and tract's
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

/// Registers the kernel `KERNELS[$index]` into tract-linalg's registry.
macro_rules! register {
    ($kernel:ident, $index:literal) => {
        static $kernel: LazyLock<DynKernel<MR, { KERNELS[$index].1 }, f32>> =
            LazyLock::new(|| kernel::<{ KERNELS[$index].1 }>(KERNELS[$index].0));
        inventory::submit! {
            MmmRoutine { make: || $kernel.mmm() }
        }
    };
}

register!(KERNEL_16, 0);
register!(KERNEL_24, 1);
register!(KERNEL_14, 2);
register!(KERNEL_7, 3);

/// The kernel of `N` columns, as tract registers it.
fn kernel<const N: usize>(name: &'static str) -> DynKernel<MR, N, f32> {
    // B's panels on cache lines: each step of k reads B's values from one or two lines.
    let (a, b) = (f32::packing(MR).align(64), f32::packing(N).align(64));
    let mut kernel = DynKernel::<MR, N, f32>::new(name, run::<N>, a, b);
    // A (the operand whose 16 values a step loads as one vector) in tract's `StridedKMajor` format instead of
    // packed: where A is an activation whose positions are contiguous (a channel-first input: Lite0's first
    // expansions and block 0's projection, whose input is 1.6 MB), tract's pack node hands over a view of it
    // and copies nothing; anything else it packs as before (16 values a step, on 128-byte lines). It stays the
    // only packing, so tract's einsum keeps its trivial path; B stays packed, which convolutions through im2col
    // require.
    kernel.packings[0].0 = Box::new(StridedKMajor::new(MR));
    kernel.arch = Some(Arch::X86_64);
    kernel
        .with_isa(IsaReq::ANY.needing(&[Isa::X86_64Avx512f]))
        // Below tract's own AVX-512 kernels (boost 0 at the same level) wherever tract chooses by its generic
        // rules: only a tier naming this kernel runs it.
        .with_boost(|| -1)
}

/// Referenced from [`super::ensure_linked`] with the rest of this architecture's registrations.
pub fn anchor() -> *const () {
    run::<NR> as *const ()
}

/// The kernel as tract calls it: a program of fused operations on one tile.
///
/// # Safety
/// tract-linalg's kernel contract: every pointer in `ops` valid for the tile it describes. The CPU must offer
/// AVX-512F (the registration requires it, so tract runs this kernel only there).
unsafe fn run<const N: usize>(ops: &[FusedKerSpec<f32>]) -> isize {
    // SAFETY: the caller's contract; AVX-512F is required by the registration.
    unsafe { program::<N>(ops) }
}

/// A square tile: column `j` in `tile[j]`, its lane `i` the value of row `i`.
pub(super) type Tile = [__m512; NR];

/// A tile of `N` columns, laid out as [`Tile`].
type Columns<const N: usize> = [__m512; N];

#[target_feature(enable = "avx512f")]
unsafe fn program<const N: usize>(ops: &[FusedKerSpec<f32>]) -> isize {
    let zero = _mm512_setzero_ps();
    let mut tile: Columns<N> = [zero; N];
    for op in ops {
        // SAFETY (every arm): the pointers come from tract for this tile, as the kernel contract says.
        unsafe {
            match *op {
                FusedKerSpec::Done => return 0,
                FusedKerSpec::Clear => tile = [zero; N],
                FusedKerSpec::LoadTile(column_major, _) => tile = load_column_major(column_major),
                // tract's operand order: the scalar or vector first, the tile value second (`ScalarSub` is
                // `s - x`, `ScalarSubF` is `x - s`); `_mm512_min_ps(a, b)` is `a < b ? a : b`, as tract's.
                FusedKerSpec::ScalarMin(s) => scalar(&mut tile, s, |s, x| _mm512_min_ps(s, x)),
                FusedKerSpec::ScalarMax(s) => scalar(&mut tile, s, |s, x| _mm512_max_ps(s, x)),
                FusedKerSpec::ScalarAdd(s) => scalar(&mut tile, s, |s, x| _mm512_add_ps(s, x)),
                FusedKerSpec::ScalarMul(s) => scalar(&mut tile, s, |s, x| _mm512_mul_ps(s, x)),
                FusedKerSpec::ScalarSub(s) => scalar(&mut tile, s, |s, x| _mm512_sub_ps(s, x)),
                FusedKerSpec::ScalarSubF(s) => scalar(&mut tile, s, |s, x| _mm512_sub_ps(x, s)),
                FusedKerSpec::LeakyRelu(alpha) => scalar(&mut tile, alpha, |alpha, x| {
                    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, zero);
                    _mm512_mask_blend_ps(positive, _mm512_mul_ps(alpha, x), x)
                }),
                FusedKerSpec::PerRowMin(p) => per_row(&mut tile, p, |v, x| _mm512_min_ps(v, x)),
                FusedKerSpec::PerRowMax(p) => per_row(&mut tile, p, |v, x| _mm512_max_ps(v, x)),
                FusedKerSpec::PerRowAdd(p) => per_row(&mut tile, p, |v, x| _mm512_add_ps(v, x)),
                FusedKerSpec::PerRowMul(p) => per_row(&mut tile, p, |v, x| _mm512_mul_ps(v, x)),
                FusedKerSpec::PerRowSub(p) => per_row(&mut tile, p, |v, x| _mm512_sub_ps(v, x)),
                FusedKerSpec::PerRowSubF(p) => per_row(&mut tile, p, |v, x| _mm512_sub_ps(x, v)),
                FusedKerSpec::PerColMin(p) => per_col(&mut tile, p, |v, x| _mm512_min_ps(v, x)),
                FusedKerSpec::PerColMax(p) => per_col(&mut tile, p, |v, x| _mm512_max_ps(v, x)),
                FusedKerSpec::PerColAdd(p) => per_col(&mut tile, p, |v, x| _mm512_add_ps(v, x)),
                FusedKerSpec::PerColMul(p) => per_col(&mut tile, p, |v, x| _mm512_mul_ps(v, x)),
                FusedKerSpec::PerColSub(p) => per_col(&mut tile, p, |v, x| _mm512_sub_ps(v, x)),
                FusedKerSpec::PerColSubF(p) => per_col(&mut tile, p, |v, x| _mm512_sub_ps(x, v)),
                FusedKerSpec::AddRowColProducts(rows, columns) => {
                    let rows = _mm512_loadu_ps(rows);
                    for (j, column) in tile.iter_mut().enumerate() {
                        *column = _mm512_fmadd_ps(rows, _mm512_set1_ps(*columns.add(j)), *column);
                    }
                }
                FusedKerSpec::AddUnicast(other) => {
                    if other.item_size != 4 {
                        return 1;
                    }
                    let addend = load::<N>(&other);
                    for (column, add) in tile.iter_mut().zip(addend) {
                        *column = _mm512_add_ps(*column, add);
                    }
                }
                FusedKerSpec::Store(output) => {
                    if output.item_size != 4 {
                        return 1;
                    }
                    store(&output, &tile);
                }
                FusedKerSpec::AddMatMul { k, pa, pb, packing } => {
                    if packing != 0 {
                        return 1;
                    }
                    add_mat_mul(
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

#[inline]
#[target_feature(enable = "avx512f")]
fn scalar<const N: usize>(tile: &mut Columns<N>, s: f32, f: impl Fn(__m512, __m512) -> __m512) {
    let s = _mm512_set1_ps(s);
    for column in tile.iter_mut() {
        *column = f(s, *column);
    }
}

#[inline(always)]
unsafe fn per_row<const N: usize>(
    tile: &mut Columns<N>,
    p: *const f32,
    f: impl Fn(__m512, __m512) -> __m512,
) {
    // SAFETY: `p` holds one value per row of the tile (tract's contract).
    let v = unsafe { _mm512_loadu_ps(p) };
    for column in tile.iter_mut() {
        *column = f(v, *column);
    }
}

#[inline(always)]
unsafe fn per_col<const N: usize>(
    tile: &mut Columns<N>,
    p: *const f32,
    f: impl Fn(__m512, __m512) -> __m512,
) {
    for (j, column) in tile.iter_mut().enumerate() {
        // SAFETY: `p` holds one value per column of the tile (tract's contract).
        *column = f(unsafe { _mm512_set1_ps(*p.add(j)) }, *column);
    }
}

/// `tile += A · B` over `k` steps: A's `MR` values a step where its panel says (a short last panel of a view
/// loads only its valid lanes: the rest may lie past the activation), B's `N` from tract's packed panel.
#[inline(always)]
unsafe fn add_mat_mul<const N: usize>(
    tile: &mut Columns<N>,
    a: &StridedPanelDesc,
    b: *const f32,
    k: usize,
) {
    // A local copy that LLVM keeps in registers (one per column) through the loop.
    let mut acc = *tile;
    let lanes: __mmask16 = if a.valid >= MR {
        0xffff
    } else {
        ((1u32 << a.valid) - 1) as __mmask16
    };
    for step in 0..k {
        // SAFETY: the panels hold `k` steps (tract's contract for this kernel's packings); masked-off lanes are
        // not read (AVX-512 masked loads suppress faults on them).
        unsafe {
            let column = _mm512_maskz_loadu_ps(
                lanes,
                a.ptr.offset(step as isize * a.k_byte_stride) as *const f32,
            );
            let b = b.add(step * N);
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(column, _mm512_set1_ps(*b.add(j)), *acc);
            }
        }
    }
    *tile = acc;
}

/// The tile stored column after column at `values` (`MR` values each): tract's `LoadTile` layout.
#[inline(always)]
unsafe fn load_column_major<const N: usize>(values: *const f32) -> Columns<N> {
    // SAFETY: `values` holds `MR * N` f32, and the caller runs with AVX-512F (its contract).
    std::array::from_fn(|j| unsafe { _mm512_loadu_ps(values.add(j * MR)) })
}

/// The lanes of the first `width` (at most 16) columns of a row.
#[inline(always)]
fn first_lanes(width: usize) -> __mmask16 {
    if width >= NR {
        0xffff
    } else {
        ((1u32 << width) - 1) as __mmask16
    }
}

/// The tile at `at` (f32), as columns.
#[inline(always)]
unsafe fn load<const N: usize>(at: &OutputStoreKer) -> Columns<N> {
    let (rows, columns) = (at.row_byte_stride, at.col_byte_stride);
    // SAFETY: `at` describes a 16 × N f32 tile (tract's contract).
    unsafe {
        let p = at.ptr as *const u8;
        let mut tile: Columns<N> = [_mm512_setzero_ps(); N];
        if rows == 4 {
            for (j, column) in tile.iter_mut().enumerate() {
                *column = _mm512_loadu_ps(p.offset(j as isize * columns) as *const f32);
            }
        } else if columns == 4 {
            // Rows of 16 columns at a time (the last block masked to what is left), transposed.
            for first in (0..N).step_by(NR) {
                let width = NR.min(N - first);
                let lanes = first_lanes(width);
                let mut block: Tile = [_mm512_setzero_ps(); NR];
                for (i, row) in block.iter_mut().enumerate() {
                    let at = p.offset(i as isize * rows + first as isize * 4) as *const f32;
                    *row = _mm512_maskz_loadu_ps(lanes, at);
                }
                transpose(&mut block);
                tile[first..first + width].copy_from_slice(&block[..width]);
            }
        } else {
            let mut values = [[0f32; MR]; N];
            for (j, column) in values.iter_mut().enumerate() {
                for (i, value) in column.iter_mut().enumerate() {
                    *value = *(p.offset(i as isize * rows + j as isize * columns) as *const f32);
                }
            }
            tile = load_column_major(values.as_ptr() as *const f32);
        }
        tile
    }
}

/// Writes `tile` to `at` (f32) a vector at a time where one of its strides is contiguous.
#[inline(always)]
unsafe fn store<const N: usize>(at: &OutputStoreKer, tile: &Columns<N>) {
    let (rows, columns) = (at.row_byte_stride, at.col_byte_stride);
    // SAFETY: `at` describes a 16 × N f32 tile (tract's contract).
    unsafe {
        let p = at.ptr;
        if rows == 4 {
            for (j, column) in tile.iter().enumerate() {
                _mm512_storeu_ps(p.offset(j as isize * columns) as *mut f32, *column);
            }
        } else if columns == 4 {
            // 16 columns at a time transposed into rows, the last block's rows masked to what is left.
            for first in (0..N).step_by(NR) {
                let width = NR.min(N - first);
                let lanes = first_lanes(width);
                let mut block: Tile = [_mm512_setzero_ps(); NR];
                block[..width].copy_from_slice(&tile[first..first + width]);
                transpose(&mut block);
                for (i, row) in block.iter().enumerate() {
                    let at = p.offset(i as isize * rows + first as isize * 4) as *mut f32;
                    _mm512_mask_storeu_ps(at, lanes, *row);
                }
            }
        } else {
            let mut values = [[0f32; MR]; N];
            for (column, stored) in values.iter_mut().zip(tile) {
                _mm512_storeu_ps(column.as_mut_ptr(), *stored);
            }
            for (j, column) in values.iter().enumerate() {
                for (i, value) in column.iter().enumerate() {
                    *(p.offset(i as isize * rows + j as isize * columns) as *mut f32) = *value;
                }
            }
        }
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

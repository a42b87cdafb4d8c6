//! x86_64 AVX2 + FMA depthwise kernels, registered for machines offering both (`depthwise512`: their AVX-512
//! versions); the matrix-product tiers for AMD and Intel processors with AVX-512, and (`mmm`) the AVX-512
//! matrix-product kernel the Intel tier names.
//!
//! Contracts are tract-linalg 0.23.9's `DepthwiseWF32` and `DepthwiseCF32`
//! (`tract_linalg::routines`). Products are fused (one FMA per tap), so results differ from
//! tract's scalar walk by rounding only.

use std::arch::x86_64::*;
use std::sync::{Mutex, OnceLock};

use tract_core::prelude::DatumType;
use tract_linalg::isa::{Arch, Isa, IsaReq, IsaSet};
use tract_linalg::mmm::{Query, Suitable};
use tract_linalg::mmm_tiers::MmmTier;
use tract_linalg::routines::{Func, Routine, RoutineFactory};
use tract_linalg::{MmmDispatch, WeightType};

pub const W_NAME: &str = "lookout_x86_64_fma_depthwise_w_f32";
pub const C_NAME: &str = "lookout_x86_64_fma_depthwise_c_f32";
pub use depthwise512::C_NAME as C512_NAME;

mod depthwise512;
mod mmm;
pub mod pack;

const NEEDS: IsaReq = IsaReq::ANY.needing(&[Isa::X86_64Avx2, Isa::X86_64Fma]);

inventory::submit! {
    Routine {
        func: Func::DepthwiseW,
        arch: Some(Arch::X86_64),
        isa: NEEDS,
        boost: 0,
        round_trip: false,
        factory: RoutineFactory::DepthwiseWF32 { name: W_NAME, run: depthwise_w_f32 },
    }
}

/// The matrix-product tier this crate adds on AMD processors with AVX-512 (Zen 4 and later): see
/// [`amd_avx512_preferred`].
pub const TIER_NAME: &str = "lookout_amd_avx512_f32";
/// `LOOKOUT_MATMUL_TIER=off` leaves every choice to tract: the baseline of the side-by-side figures, and a way
/// out should a processor disagree with the measurement.
pub const TIER_SWITCH: &str = "LOOKOUT_MATMUL_TIER";
/// `LOOKOUT_MATMUL_TILE_CHOICE=off` leaves the Intel tier one kernel of this crate's four, the 16 × 16 one (as
/// before the others existed): the baseline of their side-by-side figures (`runtime/examples/plan_ab.rs`).
pub const TILE_CHOICE_SWITCH: &str = "LOOKOUT_MATMUL_TILE_CHOICE";

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        // Above every tier of tract 0.23.9 on x86_64 (1 to 8): asked first, it answers only f32 on AMD with
        // AVX-512 and leaves everything else to them.
        precedence: 9,
        name: TIER_NAME,
        applies: |isa| tier_applies(isa, b"AuthenticAMD", true),
        preferred: amd_avx512_preferred,
    }
}

/// The matrix-product tier this crate adds on Intel processors with AVX-512: see [`intel_avx512_preferred`].
pub const INTEL_TIER_NAME: &str = "lookout_intel_avx512_f32";

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        // Above the AMD tier (which never applies on the same machine) and every tier of tract 0.23.9.
        precedence: 10,
        name: INTEL_TIER_NAME,
        applies: |isa| tier_applies(isa, b"GenuineIntel", true),
        preferred: intel_avx512_preferred,
    }
}

/// The matrix-product tier this crate adds on AMD processors with AVX2 + FMA and no AVX-512 (Zen 1 to 3): see
/// [`amd_fma_preferred`].
pub const AMD_FMA_TIER_NAME: &str = "lookout_amd_fma_f32";

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        // The AMD AVX-512 tier's precedence: the two never apply on the same machine.
        precedence: 9,
        name: AMD_FMA_TIER_NAME,
        applies: |isa| tier_applies(isa, b"AuthenticAMD", false),
        preferred: amd_fma_preferred,
    }
}

/// Whether a tier of this crate speaks on `isa`: AVX2 and FMA, AVX-512 present exactly where `avx512` says, the
/// processor of `vendor` (each tier was measured on one vendor's machines), and not switched off with
/// [`TIER_SWITCH`].
fn tier_applies(isa: &IsaSet, vendor_id: &[u8; 12], avx512: bool) -> bool {
    isa.has(Isa::X86_64Avx512f) == avx512
        && isa.has(Isa::X86_64Avx2)
        && isa.has(Isa::X86_64Fma)
        && vendor() == *vendor_id
        && !crate::plan::switched_off(TIER_SWITCH)
}

/// The CPU's vendor string (CPUID leaf 0).
fn vendor() -> [u8; 12] {
    let leaf = __cpuid(0);
    let mut vendor = [0; 12];
    for (chunk, register) in vendor.chunks_mut(4).zip([leaf.ebx, leaf.edx, leaf.ecx]) {
        chunk.copy_from_slice(&register.to_le_bytes());
    }
    vendor
}

/// One f32 kernel tract-linalg 0.23.9 runs on AVX-512 machines: its tile (`mr` × `nr`) and its throughput at a
/// full tile relative to the fastest (tract's own table for machines it has no cost model for,
/// `X86_F32_CHOICES` in `tract-linalg/src/x86_64/mmm.rs`, measured with `tract hwbench`).
struct Tile {
    name: &'static str,
    mr: usize,
    nr: usize,
    scale: f32,
}

impl Tile {
    const fn new(name: &'static str, mr: usize, nr: usize, scale: f32) -> Tile {
        Tile {
            name,
            mr,
            nr,
            scale,
        }
    }
}

const AVX512_TILES: &[Tile] = &[
    Tile::new("avx512_mmm_f32_16x12", 16, 12, 1.000),
    Tile::new("avx512_mmm_f32_16x8", 16, 8, 0.995),
    Tile::new("avx512_mmm_f32_32x5", 32, 5, 0.992),
    Tile::new("avx512_mmm_f32_32x6", 32, 6, 0.990),
    Tile::new("avx512_mmm_f32_48x4", 48, 4, 0.978),
    Tile::new("fma_mmm_f32_16x6", 16, 6, 0.964),
    Tile::new("fma_mmm_f32_24x4", 24, 4, 0.948),
    Tile::new("fma_mmm_f32_16x5", 16, 5, 0.935),
    Tile::new("fma_mmm_f32_32x3", 32, 3, 0.919),
    Tile::new("avx512_mmm_f32_64x3", 64, 3, 0.895),
    Tile::new("fma_mmm_f32_40x2", 40, 2, 0.842),
    Tile::new("fma_mmm_f32_8x8", 8, 8, 0.788),
    Tile::new("avx512_mmm_f32_80x2", 80, 2, 0.766),
];

/// f32 matrix products (n > 1) on Intel with AVX-512: the kernel whose tiles waste the least of the product,
/// weighted by its throughput, which is tract's own rule for machines it has no cost model for. tract 0.23.9
/// answers Intel from a linear cost model fitted on another Intel machine, which on a Xeon (family 6 model 207)
/// picked tiles two or three columns wide for the convolutions over 112 × 112 positions: `fma_mmm_f32_32x3` for
/// Lite0's stem (32 channels from 27 taps, 2.76 ms of a 27.9 ms plan against onnxruntime's 0.50 ms) and
/// `avx512_mmm_f32_80x2` for its first expansion (96 channels from 16: 96 rows in two 80-row tiles).
/// Where the best-fitting of this crate's own kernels ([`mmm::KERNELS`], which store whole vectors) fits the
/// product nearly as well as that tile, it answers with it instead. Matrix-vector products (n = 1, the head)
/// stay tract's: its model for them was measured on Intel.
fn intel_avx512_preferred(
    _isa: &IsaSet,
    accumulator: DatumType,
    query: &Query,
    suitable: &[Suitable],
) -> Option<&'static str> {
    if !plain_f32(accumulator, query) {
        return None;
    }
    let (Some(m), Some(n)) = (query.m, query.n) else {
        return None;
    };
    if n < 2 {
        return None;
    }
    let (best, best_score) = best_fitting(AVX512_TILES, m, n, suitable)?;
    // This crate's kernels store whole vectors where tract's store value by value. Measured layer by layer on
    // Lite0 (docs/performance.md, "A kernel that stores vectors"), the 16 x 16 one took 0.34 to 0.92 of the time
    // of tract's best-fitting tile wherever it fitted the product at least 0.83 as well, about the same (0.95)
    // at 0.75, and 1.09 to 1.32 of the time on the 7 x 7 layers, where 49 columns fill 16-wide tiles to 0.77
    // against 0.98 for 32x5; the 7-column one, which fills them, 0.85 to 0.87 of 32x5's time there ("The stem,
    // and matrix kernels of 24, 14 and 7 columns"). The best-fitting of this crate's tiles; among equal fits,
    // the first listed (16 x 16, then the wider).
    let fit = |nr: usize| utilisation(m, mmm::MR) * utilisation(n, nr);
    let choices = if crate::plan::switched_off(TILE_CHOICE_SWITCH) {
        &mmm::KERNELS[..1]
    } else {
        &mmm::KERNELS[..]
    };
    let (ours, fit) = choices
        .iter()
        .map(|&(name, columns)| (name, fit(columns)))
        .reduce(|best, next| if next.1 > best.1 { next } else { best })?;
    if fit >= OWN_KERNEL_MIN_FIT * best_score
        && tract_linalg::mmm::suitable_named(suitable, ours).is_some()
    {
        return Some(ours);
    }
    Some(best.name)
}

/// How much of a dimension of `d` values tiles of `tile` fill.
fn utilisation(d: usize, tile: usize) -> f32 {
    d as f32 / (d.div_ceil(tile) * tile) as f32
}

/// Of the `tiles` tract offers for this product (`suitable`), the one that wastes the least of an `m` × `n`
/// product, weighted by its throughput, then the one with fewer tiles (less loop overhead), then the wider: tract's
/// own rule where it has no cost model (`pick_mmm` in `tract-linalg/src/x86_64/mmm.rs`). Returns it and its score.
fn best_fitting<'t>(
    tiles: &'t [Tile],
    m: usize,
    n: usize,
    suitable: &[Suitable],
) -> Option<(&'t Tile, f32)> {
    let count = |t: &Tile| m.div_ceil(t.mr) * n.div_ceil(t.nr);
    let score = |t: &Tile| t.scale * utilisation(m, t.mr) * utilisation(n, t.nr);
    let best = tiles
        .iter()
        .filter(|t| tract_linalg::mmm::suitable_named(suitable, t.name).is_some())
        .max_by(|a, b| {
            score(a)
                .total_cmp(&score(b))
                .then(count(b).cmp(&count(a)))
                .then(a.nr.cmp(&b.nr))
        })?;
    Some((best, score(best)))
}

/// How much of the best-fitting tile's utilisation this crate's kernel must reach to be chosen over it.
const OWN_KERNEL_MIN_FIT: f32 = 0.8;

/// Whether a query is a plain f32 product, the only kind the tiers of this crate answer: 4-bit weights (a q4
/// head) and mixed precision stay tract's to answer.
fn plain_f32(accumulator: DatumType, query: &Query) -> bool {
    accumulator == DatumType::F32
        && matches!(query.weight, WeightType::Plain(DatumType::F32))
        && query.activation == DatumType::F32
}

/// f32 matrix products on AMD with AVX-512: the kernel tract's own AVX2 + FMA tier would pick (the machine seen
/// without AVX-512), not the 512-bit one. Zen 4 executes a 512-bit FMA as two 256-bit halves, and tract 0.23.9
/// has no AMD calibration for its matrix-vector kernels ("AMD has no n=1-calibrated mmv model yet": it runs the
/// 128x1 512-bit kernel on the head's first layer). Measured on an AMD EPYC (Zen 4), interleaved with tract's
/// own choice (docs/performance.md): MobileNetV3-Small f32 4.93 → 4.45 ms a frame, Lite0 17.56 → 17.27 ms;
/// answering only the matrix-vector products (n = 1) gained less. On an Intel Xeon the same answers were 0.85× as
/// fast as tract's 512-bit choices: Intel has its own tier ([`intel_avx512_preferred`]).
fn amd_avx512_preferred(
    isa: &IsaSet,
    accumulator: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    if !plain_f32(accumulator, query) {
        return None;
    }
    static WITHOUT_AVX512: OnceLock<MmmDispatch> = OnceLock::new();
    let dispatch =
        WITHOUT_AVX512.get_or_init(|| MmmDispatch::for_isa(isa.without(Isa::X86_64Avx512f)));
    let kernel = dispatch.preferred_kernel(accumulator, query.m, query.k, query.n)?;
    Some(interned(kernel.name()))
}

/// f32 matrix products on AMD with AVX2 + FMA and no AVX-512 of a few rows (at most 32) and short sums (k at most
/// 32) over many columns (at least 1024): a convolution stem's few channels over 112 × 112 positions. There this
/// crate's AVX2 kernel ([`mmm::AVX2_NAME`], 8 × 8 tiles stored a vector at a time) runs where tract 0.23.9's
/// AMD cost model (`amd_fma_linear.rs`) gives tiles of 3 to 6 columns that store value by value. Measured
/// layer by layer on an AMD EPYC of the Zen 3 generation against tract's choice, alternated
/// (docs/performance.md): Lite0's stem (32 channels from 27 taps, `fma_mmm_f32_32x3`) 0.58 to 0.76 of the time,
/// MobileNetV3-Small's (16 channels, `fma_mmm_f32_16x6`) 0.71 to 0.82. Everywhere else tract's choice stands: the same
/// 8 × 8 kernel took 1.07 to 1.8 of tract's time on the pointwise layers (tract's 8 × 8 tiles have 0.73 of its
/// wider tiles' throughput, `FMA_CHOICES`), the 112 × 112 expansion (96 channels from 16) included.
fn amd_fma_preferred(
    _isa: &IsaSet,
    accumulator: DatumType,
    query: &Query,
    suitable: &[Suitable],
) -> Option<&'static str> {
    if !plain_f32(accumulator, query) {
        return None;
    }
    let (Some(m), Some(k), Some(n)) = (query.m, query.k, query.n) else {
        return None;
    };
    if m > 32 || k > 32 || n < 1024 {
        return None;
    }
    tract_linalg::mmm::suitable_named(suitable, mmm::AVX2_NAME)?;
    Some(mmm::AVX2_NAME)
}

/// `name` as the `&'static str` a tier answers with: tract's kernels are statics but hand out their names
/// through the boxed kernel; each of the few names is leaked once.
fn interned(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = names.iter().find(|known| **known == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

inventory::submit! {
    Routine {
        func: Func::DepthwiseC,
        arch: Some(Arch::X86_64),
        isa: NEEDS,
        boost: 0,
        round_trip: false,
        factory: RoutineFactory::DepthwiseCF32 { name: C_NAME, run: depthwise_c_f32 },
    }
}

/// Referenced from [`super::ensure_linked`]: keeps this object file, and the registrations above
/// in it, in the binary.
#[inline(never)]
pub fn ensure_linked() {
    std::hint::black_box((
        depthwise_w_f32 as *const (),
        depthwise_c_f32 as *const (),
        depthwise512::anchor(),
        mmm::anchor(),
    ));
}

/// Mask of the first `n` lanes (`n` at most 8).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn first_lanes(n: usize) -> __m256i {
    const M: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    let n = n.min(8);
    // SAFETY: `8 - n` is at most 8, so the 8 lanes read stay inside the 16 of `M`.
    unsafe { _mm256_loadu_si256(M.as_ptr().add(8 - n) as *const __m256i) }
}

/// `DepthwiseWF32`: `len` contiguous output points, each `bias` plus every
/// `taps[t] * input[offsets[t] + i * in_stride]`.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseWF32`; the CPU must offer AVX2 and FMA (the registration
/// requires both, so tract resolves this kernel only there).
pub unsafe fn depthwise_w_f32(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    len: usize,
    in_stride: isize,
) {
    let n = taps.len().min(offsets.len());
    let (taps, offsets) = (&taps[..n], &offsets[..n]);
    let gather_fits = in_stride > 0
        && in_stride
            .checked_mul(8)
            .is_some_and(|s| s <= i32::MAX as isize);
    // SAFETY: the caller's contract covers every read and write, and the CPU features (above).
    unsafe {
        match in_stride {
            1 => w_stride1(input, output, taps, offsets, bias, len),
            2 => w_stride2(input, output, taps, offsets, bias, len),
            _ if gather_fits => w_gather(input, output, taps, offsets, bias, 0, len, in_stride),
            _ => super::depthwise_w_points(input, output, taps, offsets, bias, 0, len, in_stride),
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn w_stride1(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    len: usize,
) {
    // SAFETY: every load reads `input[offsets[t] + j]` for `j < len`, every store `output[j]`
    // for `j < len` (the tail is masked), which the caller guarantees.
    unsafe {
        let biasv = _mm256_set1_ps(bias);
        let mut i = 0usize;
        while i + 32 <= len {
            let (mut a0, mut a1, mut a2, mut a3) = (biasv, biasv, biasv, biasv);
            for (tap, offset) in taps.iter().zip(offsets) {
                let k = _mm256_set1_ps(*tap);
                let p = input.offset(*offset).add(i);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), k, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), k, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(16)), k, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(24)), k, a3);
            }
            _mm256_storeu_ps(output.add(i), a0);
            _mm256_storeu_ps(output.add(i + 8), a1);
            _mm256_storeu_ps(output.add(i + 16), a2);
            _mm256_storeu_ps(output.add(i + 24), a3);
            i += 32;
        }
        while i + 16 <= len {
            let (mut a0, mut a1) = (biasv, biasv);
            for (tap, offset) in taps.iter().zip(offsets) {
                let k = _mm256_set1_ps(*tap);
                let p = input.offset(*offset).add(i);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), k, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), k, a1);
            }
            _mm256_storeu_ps(output.add(i), a0);
            _mm256_storeu_ps(output.add(i + 8), a1);
            i += 16;
        }
        while i < len {
            let rest = len - i;
            let mut acc = biasv;
            if rest >= 8 {
                for (tap, offset) in taps.iter().zip(offsets) {
                    let x = _mm256_loadu_ps(input.offset(*offset).add(i));
                    acc = _mm256_fmadd_ps(x, _mm256_set1_ps(*tap), acc);
                }
                _mm256_storeu_ps(output.add(i), acc);
            } else {
                let m = first_lanes(rest);
                for (tap, offset) in taps.iter().zip(offsets) {
                    let x = _mm256_maskload_ps(input.offset(*offset).add(i), m);
                    acc = _mm256_fmadd_ps(x, _mm256_set1_ps(*tap), acc);
                }
                _mm256_maskstore_ps(output.add(i), m, acc);
            }
            i += 8;
        }
    }
}

/// The even lanes of the 16 floats from `p`: eight stride-2 points.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn evens(p: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 16 readable floats from `p`.
    unsafe {
        let a = _mm256_loadu_ps(p);
        let b = _mm256_loadu_ps(p.add(8));
        // [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs reordered to a0 a2 a4 a6 b0 b2 b4 b6.
        let s = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(s)))
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn w_stride2(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    len: usize,
) {
    // SAFETY: eight points from `i` read `input[offsets[t] + 2i ..= offsets[t] + 2i + 15]`; the
    // loops run only while `2i + 15 <= 2 (len - 1)`, i.e. `i + 8 < len`, so every read is one the
    // caller guarantees. The rest goes through the masked gather.
    unsafe {
        let biasv = _mm256_set1_ps(bias);
        let mut i = 0usize;
        while i + 16 < len {
            let (mut a0, mut a1) = (biasv, biasv);
            for (tap, offset) in taps.iter().zip(offsets) {
                let k = _mm256_set1_ps(*tap);
                let p = input.offset(*offset).add(2 * i);
                a0 = _mm256_fmadd_ps(evens(p), k, a0);
                a1 = _mm256_fmadd_ps(evens(p.add(16)), k, a1);
            }
            _mm256_storeu_ps(output.add(i), a0);
            _mm256_storeu_ps(output.add(i + 8), a1);
            i += 16;
        }
        while i + 8 < len {
            let mut acc = biasv;
            for (tap, offset) in taps.iter().zip(offsets) {
                acc = _mm256_fmadd_ps(
                    evens(input.offset(*offset).add(2 * i)),
                    _mm256_set1_ps(*tap),
                    acc,
                );
            }
            _mm256_storeu_ps(output.add(i), acc);
            i += 8;
        }
        w_gather(input, output, taps, offsets, bias, i, len, 2);
    }
}

/// Points `from..len` at any positive stride, eight at a time through masked gathers.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn w_gather(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    from: usize,
    len: usize,
    in_stride: isize,
) {
    // SAFETY: lane `l` of a gather reads `input[offsets[t] + (i + l) * in_stride]` only where
    // `i + l < len` (masked), which the caller guarantees; `8 * in_stride` fits an i32 (checked by
    // `depthwise_w_f32`). Stores are masked the same way.
    unsafe {
        let biasv = _mm256_set1_ps(bias);
        let s = in_stride as i32;
        let index = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
        let mut i = from;
        while i < len {
            let m = first_lanes(len - i);
            let mf = _mm256_castsi256_ps(m);
            let mut acc = biasv;
            for (tap, offset) in taps.iter().zip(offsets) {
                let base = input.offset(*offset + i as isize * in_stride);
                let x = _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), base, index, mf);
                acc = _mm256_fmadd_ps(x, _mm256_set1_ps(*tap), acc);
            }
            _mm256_maskstore_ps(output.add(i), m, acc);
            i += 8;
        }
    }
}

/// `DepthwiseCF32`: `len` output positions of `channels` contiguous channels each.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseCF32`; the CPU must offer AVX2 and FMA (the registration
/// requires both, so tract resolves this kernel only there).
#[allow(clippy::too_many_arguments)]
pub unsafe fn depthwise_c_f32(
    input: *const f32,
    output: *mut f32,
    kernel: *const f32,
    tap_indices: &[usize],
    offsets: &[isize],
    bias: *const f32,
    channels: usize,
    k_stride: usize,
    len: usize,
    in_stride: isize,
    out_stride: isize,
) {
    let g = Geometry::new(
        input,
        output,
        kernel,
        tap_indices,
        offsets,
        bias,
        channels,
        k_stride,
        len,
        in_stride,
        out_stride,
    );
    // SAFETY: the caller's contract and the CPU features (above).
    unsafe { c_all(&g, channels) }
}

/// The arguments of one `DepthwiseCF32` call.
struct Geometry<'a> {
    input: *const f32,
    output: *mut f32,
    kernel: *const f32,
    tap_indices: &'a [usize],
    offsets: &'a [isize],
    bias: *const f32,
    k_stride: usize,
    len: usize,
    in_stride: isize,
    out_stride: isize,
    /// Low and high bounds every stored value is clamped to (`max` then `min`, as tract's clip chain applies
    /// them), when a plan node fused its clip into this one (`super::fused_clamp`).
    clamp: Option<(f32, f32)>,
}

impl<'a> Geometry<'a> {
    /// A `DepthwiseCF32` call's arguments (as many taps as both lists hold), with the clamp a plan node offered
    /// for the `len * channels` values the call stores.
    #[allow(clippy::too_many_arguments)]
    fn new(
        input: *const f32,
        output: *mut f32,
        kernel: *const f32,
        tap_indices: &'a [usize],
        offsets: &'a [isize],
        bias: *const f32,
        channels: usize,
        k_stride: usize,
        len: usize,
        in_stride: isize,
        out_stride: isize,
    ) -> Geometry<'a> {
        let n = tap_indices.len().min(offsets.len());
        Geometry {
            input,
            output,
            kernel,
            tap_indices: &tap_indices[..n],
            offsets: &offsets[..n],
            bias,
            k_stride,
            len,
            in_stride,
            out_stride,
            clamp: super::fused_clamp::take(len * channels),
        }
    }
}

/// Channel blocks outer (16, then 8, then a masked rest), output positions inner, four at a time:
/// a block's kernel vectors are loaded once per tap for four positions.
#[target_feature(enable = "avx2,fma")]
unsafe fn c_all(g: &Geometry, channels: usize) {
    // SAFETY: `c_block` reads and writes channels `c..c + 8 * V` (or the masked part of them) of
    // the caller's positions, all below `channels`.
    unsafe {
        let mut c = 0usize;
        while c + 16 <= channels {
            c_positions::<2, false>(g, c, _mm256_setzero_si256());
            c += 16;
        }
        if c + 8 <= channels {
            c_positions::<1, false>(g, c, _mm256_setzero_si256());
            c += 8;
        }
        if c < channels {
            c_positions::<1, true>(g, c, first_lanes(channels - c));
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn c_positions<const V: usize, const MASKED: bool>(g: &Geometry, c: usize, m: __m256i) {
    // SAFETY: positions `i < len` only; see `c_block`.
    unsafe {
        let mut i = 0usize;
        while i + 4 <= g.len {
            c_block::<4, V, MASKED>(g, c, i, m);
            i += 4;
        }
        while i < g.len {
            c_block::<1, V, MASKED>(g, c, i, m);
            i += 1;
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load<const MASKED: bool>(p: *const f32, m: __m256i) -> __m256 {
    // SAFETY: the caller guarantees the 8 floats (or the masked ones) are readable.
    unsafe {
        if MASKED {
            _mm256_maskload_ps(p, m)
        } else {
            _mm256_loadu_ps(p)
        }
    }
}

/// `P` positions from `i`, `V` vectors of channels from `c`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn c_block<const P: usize, const V: usize, const MASKED: bool>(
    g: &Geometry,
    c: usize,
    i: usize,
    m: __m256i,
) {
    // SAFETY: position `i + p < len`, channels `c + 8v + lane < channels` (masked where not
    // whole): exactly the reads and writes tract's `DepthwiseCF32` contract guarantees.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); V]; P];
        for v in 0..V {
            let b = load::<MASKED>(g.bias.add(c + 8 * v), m);
            for row in acc.iter_mut() {
                row[v] = b;
            }
        }
        let mut inputs = [std::ptr::null::<f32>(); P];
        for (p, ip) in inputs.iter_mut().enumerate() {
            *ip = g.input.offset((i + p) as isize * g.in_stride).add(c);
        }
        for (&kix, &off) in g.tap_indices.iter().zip(g.offsets) {
            let kp = g.kernel.add(kix * g.k_stride + c);
            let mut k = [_mm256_setzero_ps(); V];
            for (v, kv) in k.iter_mut().enumerate() {
                *kv = load::<MASKED>(kp.add(8 * v), m);
            }
            for (row, ip) in acc.iter_mut().zip(&inputs) {
                let xp = ip.offset(off);
                for v in 0..V {
                    row[v] = _mm256_fmadd_ps(load::<MASKED>(xp.add(8 * v), m), k[v], row[v]);
                }
            }
        }
        if let Some((low, high)) = g.clamp {
            let (low, high) = (_mm256_set1_ps(low), _mm256_set1_ps(high));
            for a in acc.iter_mut().flatten() {
                *a = _mm256_min_ps(_mm256_max_ps(*a, low), high);
            }
        }
        for (p, row) in acc.iter().enumerate() {
            let op = g.output.offset((i + p) as isize * g.out_stride).add(c);
            for (v, a) in row.iter().enumerate() {
                if MASKED {
                    _mm256_maskstore_ps(op.add(8 * v), m, *a);
                } else {
                    _mm256_storeu_ps(op.add(8 * v), *a);
                }
            }
        }
    }
}

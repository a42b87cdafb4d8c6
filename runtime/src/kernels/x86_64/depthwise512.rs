//! The AVX-512 depthwise kernels: the AVX2 + FMA ones' loops on 512-bit vectors. `DepthwiseC` takes 16 channels
//! a vector and 32 a block; `DepthwiseW` 16 points a vector at strides 1 and 2 (a stride-2 vector is the even
//! lanes of two loads, picked by one permute), masked at the end of a row, and leaves other strides to the AVX2
//! kernel's gathers.
//!
//! On an Intel Xeon with AVX-512 (family 6 model 207) Lite0's depthwise convolutions through the 256-bit kernel
//! took about twice onnxruntime's time, layer after layer (docs/performance.md), where onnxruntime runs 16
//! channels a vector; a kernel at level 3 of tract's instruction-set ladder wins `best_for` over the level-2
//! one wherever AVX-512F is offered.

use std::arch::x86_64::*;

use tract_linalg::isa::{Arch, Isa, IsaReq};
use tract_linalg::routines::{Func, Routine, RoutineFactory};

use super::Geometry;

pub const C_NAME: &str = "lookout_x86_64_avx512_depthwise_c_f32";
pub const W_NAME: &str = "lookout_x86_64_avx512_depthwise_w_f32";

inventory::submit! {
    Routine {
        func: Func::DepthwiseW,
        arch: Some(Arch::X86_64),
        // FMA and AVX2 as well: strides other than 1 and 2 go to the AVX2 kernel.
        isa: IsaReq::ANY.needing(&[Isa::X86_64Avx512f, Isa::X86_64Avx2, Isa::X86_64Fma]),
        boost: 0,
        round_trip: false,
        factory: RoutineFactory::DepthwiseWF32 { name: W_NAME, run: depthwise_w_f32 },
    }
}

inventory::submit! {
    Routine {
        func: Func::DepthwiseC,
        arch: Some(Arch::X86_64),
        isa: IsaReq::ANY.needing(&[Isa::X86_64Avx512f]),
        boost: 0,
        round_trip: false,
        factory: RoutineFactory::DepthwiseCF32 { name: C_NAME, run: depthwise_c_f32 },
    }
}

/// `DepthwiseCF32`: `len` output positions of `channels` contiguous channels each.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseCF32`; the CPU must offer AVX-512F (the registration requires it, so
/// tract resolves this kernel only there).
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
    // SAFETY: the caller's contract and the CPU feature (above).
    unsafe { c_all(&g, channels) }
}

/// Channel blocks outer (32, then 16, then a masked rest), output positions inner, eight at a time (then four,
/// then one): a block's kernel vectors are loaded once per tap for eight positions (0.70 of the AVX2 kernel's
/// time on Lite0's layers, 0.79 with four: `runtime/examples/depthwise_ab.rs`).
#[target_feature(enable = "avx512f")]
unsafe fn c_all(g: &Geometry, channels: usize) {
    // SAFETY: `c_block` reads and writes channels `c..c + 16 * V` (or the masked part of them) of the caller's
    // positions, all below `channels`.
    unsafe {
        let mut c = 0usize;
        while c + 32 <= channels {
            c_positions::<2, false>(g, c, 0);
            c += 32;
        }
        if c + 16 <= channels {
            c_positions::<1, false>(g, c, 0);
            c += 16;
        }
        if c < channels {
            c_positions::<1, true>(g, c, first_lanes(channels - c));
        }
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn c_positions<const V: usize, const MASKED: bool>(g: &Geometry, c: usize, m: __mmask16) {
    // SAFETY: positions `i < len` only; see `c_block`.
    unsafe {
        let mut i = 0usize;
        while i + 8 <= g.len {
            c_block::<8, V, MASKED>(g, c, i, m);
            i += 8;
        }
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
#[target_feature(enable = "avx512f")]
unsafe fn load<const MASKED: bool>(p: *const f32, m: __mmask16) -> __m512 {
    // SAFETY: the caller guarantees the 16 floats (or the masked ones) are readable; masked-off lanes are not
    // read (AVX-512 masked loads suppress faults on them).
    unsafe {
        if MASKED {
            _mm512_maskz_loadu_ps(m, p)
        } else {
            _mm512_loadu_ps(p)
        }
    }
}

/// `P` positions from `i`, `V` vectors of channels from `c`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn c_block<const P: usize, const V: usize, const MASKED: bool>(
    g: &Geometry,
    c: usize,
    i: usize,
    m: __mmask16,
) {
    // SAFETY: position `i + p < len`, channels `c + 16v + lane < channels` (masked where not whole): exactly
    // the reads and writes tract's `DepthwiseCF32` contract guarantees.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; P];
        for v in 0..V {
            let b = load::<MASKED>(g.bias.add(c + 16 * v), m);
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
            let mut k = [_mm512_setzero_ps(); V];
            for (v, kv) in k.iter_mut().enumerate() {
                *kv = load::<MASKED>(kp.add(16 * v), m);
            }
            for (row, ip) in acc.iter_mut().zip(&inputs) {
                let xp = ip.offset(off);
                for v in 0..V {
                    row[v] = _mm512_fmadd_ps(load::<MASKED>(xp.add(16 * v), m), k[v], row[v]);
                }
            }
        }
        if let Some((low, high)) = g.clamp {
            let (low, high) = (_mm512_set1_ps(low), _mm512_set1_ps(high));
            for a in acc.iter_mut().flatten() {
                *a = _mm512_min_ps(_mm512_max_ps(*a, low), high);
            }
        }
        for (p, row) in acc.iter().enumerate() {
            let op = g.output.offset((i + p) as isize * g.out_stride).add(c);
            for (v, a) in row.iter().enumerate() {
                if MASKED {
                    _mm512_mask_storeu_ps(op.add(16 * v), m, *a);
                } else {
                    _mm512_storeu_ps(op.add(16 * v), *a);
                }
            }
        }
    }
}

/// Mask of the first `n` lanes (`n` at most 16).
#[inline]
fn first_lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// `DepthwiseWF32`: `len` contiguous output points, each `bias` plus every
/// `taps[t] * input[offsets[t] + i * in_stride]`.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseWF32`; the CPU must offer AVX-512F, AVX2 and FMA (the registration
/// requires them, so tract resolves this kernel only there).
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
    // SAFETY: the caller's contract covers every read and write, and the CPU features (above).
    unsafe {
        match in_stride {
            1 => w_stride1(input, output, taps, offsets, bias, len),
            2 => w_stride2(input, output, taps, offsets, bias, len),
            _ => super::depthwise_w_f32(input, output, taps, offsets, bias, len, in_stride),
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn w_stride1(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    len: usize,
) {
    // SAFETY: every load reads `input[offsets[t] + j]` for `j < len`, every store writes `output[j]` for
    // `j < len` (the tail is masked), which the caller guarantees.
    unsafe {
        let biasv = _mm512_set1_ps(bias);
        let mut i = 0usize;
        while i + 64 <= len {
            let mut acc = [biasv; 4];
            for (tap, offset) in taps.iter().zip(offsets) {
                let k = _mm512_set1_ps(*tap);
                let p = input.offset(*offset).add(i);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(16 * v)), k, *a);
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(output.add(i + 16 * v), *a);
            }
            i += 64;
        }
        while i < len {
            let m = first_lanes(len - i);
            let mut acc = biasv;
            for (tap, offset) in taps.iter().zip(offsets) {
                let x = _mm512_maskz_loadu_ps(m, input.offset(*offset).add(i));
                acc = _mm512_fmadd_ps(x, _mm512_set1_ps(*tap), acc);
            }
            _mm512_mask_storeu_ps(output.add(i), m, acc);
            i += 16;
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn w_stride2(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    len: usize,
) {
    // SAFETY: sixteen points from `i` take the even lanes of `input[offsets[t] + 2i ..= offsets[t] + 2i + 31]`;
    // the masks keep only the lanes `2j` with `i + j < len`, i.e. the points the caller guarantees (odd lanes
    // past the last point are not read: their mask bits are off). Stores are masked the same way.
    unsafe {
        let biasv = _mm512_set1_ps(bias);
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut i = 0usize;
        while i < len {
            let points = (len - i).min(16);
            // Lanes 0..=2(points-1) of the 32 floats from 2i: the first vector holds lanes 0..16, the second
            // 16..32.
            let reach = 2 * points - 1;
            let (m0, m1) = (first_lanes(reach), first_lanes(reach.saturating_sub(16)));
            let mut acc = biasv;
            for (tap, offset) in taps.iter().zip(offsets) {
                let p = input.offset(*offset).add(2 * i);
                let a = _mm512_maskz_loadu_ps(m0, p);
                let b = _mm512_maskz_loadu_ps(m1, p.add(16));
                let x = _mm512_permutex2var_ps(a, evens, b);
                acc = _mm512_fmadd_ps(x, _mm512_set1_ps(*tap), acc);
            }
            _mm512_mask_storeu_ps(output.add(i), first_lanes(points), acc);
            i += 16;
        }
    }
}

/// Referenced from [`super::ensure_linked`].
pub fn anchor() -> [*const (); 2] {
    [depthwise_c_f32 as *const (), depthwise_w_f32 as *const ()]
}

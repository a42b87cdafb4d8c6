//! Packing a k-inner activation into 16-wide panels with AVX-512: sixteen rows loaded a vector each,
//! transposed in registers, stored as sixteen steps of k.
//!
//! A matrix kernel reads 16 values of its packed operand per step of k (16 positions of an activation), so an
//! activation stored with k innermost (a channel-last convolution output: every position's channels
//! contiguous) must be transposed as it is packed. tract-linalg 0.23.9 does it in 4 × 4 tiles moved value by
//! value on x86 (`pack_k_major`'s portable `transpose_4x4`; its vector versions are for ARM): the projections
//! of Lite0, whose inputs are the channel-last outputs of its depthwise convolutions, spent about 1.3 ms of a
//! 21 ms plan packing. Used by `crate::plan::KInnerPack`, which keeps tract's panel layout to the byte.

use std::arch::x86_64::*;

use super::mmm::{transpose, Tile, NR};
use crate::kernels::K_INNER_PANEL as R;

// The panel is one tile of the matrix kernel's transpose wide.
const _: () = assert!(R == NR);

/// Packs `mn` rows of `k` contiguous f32 (`row_stride` values apart) into panels of [`R`] rows: panel `p`
/// starts `p * panel_len` values into `packed`, and holds step `kk` of row `p * R + x` at `kk * R + x`, as
/// tract's `PackedFormat` lays it out. The rows past `mn` in the last panel, and each panel's values past its
/// `k` steps, are zeros.
///
/// # Safety
/// The CPU offers AVX-512F; `src` holds `mn` rows of `k` values `row_stride` apart; `packed` has room for
/// `mn.div_ceil(R) * panel_len` values, with `panel_len >= k * R`.
#[target_feature(enable = "avx512f")]
pub unsafe fn pack_k_inner(
    src: *const f32,
    row_stride: usize,
    k: usize,
    mn: usize,
    packed: *mut f32,
    panel_len: usize,
) {
    let zero = _mm512_setzero_ps();
    for panel in 0..mn.div_ceil(R) {
        let rows = R.min(mn - panel * R);
        // SAFETY (the block): every row read is one of the `mn` rows and reads at most its `k` values (masked
        // loads suppress the lanes past `k`); every write stays in this panel's `panel_len` values.
        unsafe {
            let first_row = src.add(panel * R * row_stride);
            let out = packed.add(panel * panel_len);
            for kk in (0..k).step_by(R) {
                let width = R.min(k - kk);
                let lanes = ((1u32 << width) - 1) as __mmask16;
                let mut tile: Tile = [zero; R];
                for (x, row) in tile.iter_mut().enumerate().take(rows) {
                    *row = _mm512_maskz_loadu_ps(lanes, first_row.add(x * row_stride + kk));
                }
                transpose(&mut tile);
                for (j, step) in tile.iter().enumerate().take(width) {
                    _mm512_storeu_ps(out.add((kk + j) * R), *step);
                }
            }
            for value in k * R..panel_len {
                *out.add(value) = 0.0;
            }
        }
    }
}

/// One im2col panel of [`R`] positions along a row of the output, whose values for step `kk` of k lie at
/// `src + k_offsets[kk] + x * step` (`x` the position in the panel, `step` 1 or 2: the convolution's stride):
/// written at `out + kk * R + x`, as tract's `PackedFormat` lays out a full panel. A stride of 2 loads the 31
/// values the 16 positions span as two vectors and keeps the even ones.
///
/// # Safety
/// The CPU offers AVX-512F; `src + k_offsets[kk] + x * step` is a readable f32 for every `kk` and every `x` in
/// `0..R`; `out` has room for `k_offsets.len() * R` values.
#[target_feature(enable = "avx512f")]
pub unsafe fn im2col_panel(src: *const f32, k_offsets: &[usize], step: usize, out: *mut f32) {
    // SAFETY (the block): the reads are the caller's, the second vector of a stride-2 step masked to its first
    // 15 values (16 + 0..15 = the 31 values from the first position to the last); the writes are the caller's.
    unsafe {
        if step == 1 {
            for (kk, &offset) in k_offsets.iter().enumerate() {
                _mm512_storeu_ps(out.add(kk * R), _mm512_loadu_ps(src.add(offset)));
            }
        } else {
            debug_assert_eq!(step, 2);
            let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
            for (kk, &offset) in k_offsets.iter().enumerate() {
                let first = src.add(offset);
                let low = _mm512_loadu_ps(first);
                let high = _mm512_maskz_loadu_ps(0x7fff, first.add(R));
                _mm512_storeu_ps(out.add(kk * R), _mm512_permutex2var_ps(low, evens, high));
            }
        }
    }
}

//! aarch64 NEON `DepthwiseW` for stride 2 at any tap count.
//!
//! tract-linalg 0.23.9's aarch64 `DepthwiseW` de-interleaves stride 2 (`vld2q`) only for one to
//! four taps, so 3×3 and 5×5 stride-2 layers (9 and 25 taps) ran its scalar loop. This kernel
//! handles stride 2 itself and hands every other stride to tract's own kernel, found in the
//! registry by function (so a tract with a better one is used as it is).

use std::arch::aarch64::*;
use std::sync::OnceLock;
use tract_linalg::isa::{Arch, IsaReq};
use tract_linalg::routines::{declared, DepthwiseWF32, Func, Routine, RoutineFactory};

pub const W_NAME: &str = "lookout_aarch64_depthwise_w_f32";

inventory::submit! {
    Routine {
        func: Func::DepthwiseW,
        arch: Some(Arch::Aarch64),
        isa: IsaReq::ANY,
        // Same level as tract's own NEON kernel, which this one wraps: it must win the tie.
        boost: 1,
        round_trip: false,
        factory: RoutineFactory::DepthwiseWF32 { name: W_NAME, run: depthwise_w_f32 },
    }
}

/// Referenced from [`super::ensure_linked`]: keeps this object file, and the registration above
/// in it, in the binary.
#[inline(never)]
pub fn ensure_linked() {
    std::hint::black_box(depthwise_w_f32 as *const ());
}

/// tract's best `DepthwiseW` kernel here other than ours.
fn tract_w() -> Option<DepthwiseWF32> {
    static KERNEL: OnceLock<Option<DepthwiseWF32>> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let isa = tract_linalg::isa::native();
        declared()
            .filter(|r| r.func == Func::DepthwiseW && r.name() != W_NAME && r.runnable_on(&isa))
            .max_by_key(|r| (r.arch.is_some(), r.boost, r.name()))
            .and_then(|r| match r.factory {
                RoutineFactory::DepthwiseWF32 { run, .. } => Some(run),
                _ => None,
            })
    })
}

/// `DepthwiseWF32`: `len` contiguous output points, each `bias` plus every
/// `taps[t] * input[offsets[t] + i * in_stride]`.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseWF32`.
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
    // SAFETY: the caller's contract covers every read and write of both paths.
    unsafe {
        match (in_stride, tract_w()) {
            (2, _) => stride2(input, output, taps, offsets, bias, len),
            (_, Some(other)) => other(input, output, taps, offsets, bias, len, in_stride),
            (_, None) => {
                super::depthwise_w_points(input, output, taps, offsets, bias, 0, len, in_stride)
            }
        }
    }
}

unsafe fn stride2(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    len: usize,
) {
    // SAFETY: four points from `i` read `input[offsets[t] + 2i ..= offsets[t] + 2i + 7]`; the
    // loops run only while `2i + 7 <= 2 (len - 1)` (`i + 4 < len`; 16 points: `i + 16 < len`), so
    // every read is one the caller guarantees; the rest is scalar.
    unsafe {
        let biasv = vdupq_n_f32(bias);
        let mut i = 0usize;
        while i + 16 < len {
            let (mut a0, mut a1, mut a2, mut a3) = (biasv, biasv, biasv, biasv);
            for (tap, offset) in taps.iter().zip(offsets) {
                let k = vdupq_n_f32(*tap);
                let p = input.offset(*offset).add(2 * i);
                a0 = vfmaq_f32(a0, vld2q_f32(p).0, k);
                a1 = vfmaq_f32(a1, vld2q_f32(p.add(8)).0, k);
                a2 = vfmaq_f32(a2, vld2q_f32(p.add(16)).0, k);
                a3 = vfmaq_f32(a3, vld2q_f32(p.add(24)).0, k);
            }
            vst1q_f32(output.add(i), a0);
            vst1q_f32(output.add(i + 4), a1);
            vst1q_f32(output.add(i + 8), a2);
            vst1q_f32(output.add(i + 12), a3);
            i += 16;
        }
        while i + 4 < len {
            let mut acc = biasv;
            for (tap, offset) in taps.iter().zip(offsets) {
                let x = vld2q_f32(input.offset(*offset).add(2 * i)).0;
                acc = vfmaq_f32(acc, x, vdupq_n_f32(*tap));
            }
            vst1q_f32(output.add(i), acc);
            i += 4;
        }
        super::depthwise_w_points(input, output, taps, offsets, bias, i, len, 2);
    }
}

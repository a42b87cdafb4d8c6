//! armv7 NEON depthwise kernels (`DepthwiseW` strides 1 and 2, `DepthwiseC`); tract-linalg 0.23.9
//! has none for 32-bit ARM.
//!
//! NEON intrinsics and `#[target_feature(enable = "neon")]` are unstable on 32-bit ARM (Rust 1.95),
//! so the inner loops are two `global_asm!` functions with the AAPCS calling convention, taking one
//! pointer to a `#[repr(C)]` block of arguments; the Rust around them prepares per-tap byte
//! offsets and runs the tails. `vmla.f32` (multiply, then add) rounds as tract's scalar walk does;
//! only q0–q3 and q8 are used, so no callee-saved NEON register needs saving.

use tract_linalg::isa::{Arch, Isa, IsaReq};
use tract_linalg::routines::{Func, Routine, RoutineFactory};

pub const W_NAME: &str = "lookout_armv7_neon_depthwise_w_f32";
pub const C_NAME: &str = "lookout_armv7_neon_depthwise_c_f32";

const NEEDS: IsaReq = IsaReq::ANY.needing(&[Isa::ArmNeon]);

inventory::submit! {
    Routine {
        func: Func::DepthwiseW,
        arch: Some(Arch::Arm),
        isa: NEEDS,
        boost: 0,
        round_trip: false,
        factory: RoutineFactory::DepthwiseWF32 { name: W_NAME, run: depthwise_w_f32 },
    }
}

inventory::submit! {
    Routine {
        func: Func::DepthwiseC,
        arch: Some(Arch::Arm),
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
    std::hint::black_box((depthwise_w_f32 as *const (), depthwise_c_f32 as *const ()));
}

/// Most taps a call handles in NEON (tract hands at most 128 to `DepthwiseW`); more run scalar.
const MAX_TAPS: usize = 128;

/// Arguments of `lookout_armv7_dw_w`: `blocks` runs of 4 points, each `bias` plus every tap
/// (`pairs`: byte offset from `input`, then the tap's bits) times the input; `stride` 1 or 2.
#[repr(C)]
struct WArgs {
    input: *const f32,
    output: *mut f32,
    pairs: *const [u32; 2],
    pairs_end: *const [u32; 2],
    blocks: u32,
    stride: u32,
    bias: f32,
}

/// Arguments of `lookout_armv7_dw_c`: `len` positions, `blocks` runs of 4 channels each; `pairs`
/// holds per tap the byte offsets of its input (from the position) and of its kernel vector.
#[repr(C)]
struct CArgs {
    input: *const f32,
    output: *mut f32,
    kernel: *const f32,
    bias: *const f32,
    pairs: *const [i32; 2],
    pairs_end: *const [i32; 2],
    blocks: u32,
    len: u32,
    in_stride_bytes: i32,
    out_stride_bytes: i32,
}

core::arch::global_asm!(
    ".text",
    ".fpu neon",
    ".arm",
    ".global lookout_armv7_dw_w",
    ".type lookout_armv7_dw_w, %function",
    ".p2align 2",
    "lookout_armv7_dw_w:",
    "push {{r4-r8, lr}}",
    "ldr r1, [r0, #0]",
    "ldr r2, [r0, #4]",
    "ldr r3, [r0, #8]",
    "ldr r4, [r0, #12]",
    "ldr r5, [r0, #16]",
    "ldr r6, [r0, #20]",
    "add r7, r0, #24",
    "vld1.32 {{d16[], d17[]}}, [r7]",
    "cmp r5, #0",
    "beq 9f",
    "cmp r6, #2",
    "beq 3f",
    // stride 1
    "1:",
    "vmov q0, q8",
    "mov lr, r3",
    "2:",
    "ldr r0, [lr], #4",
    "add r0, r0, r1",
    "vld1.32 {{d2[], d3[]}}, [lr]!",
    "vld1.32 {{q2}}, [r0]",
    "vmla.f32 q0, q2, q1",
    "cmp lr, r4",
    "bne 2b",
    "vst1.32 {{q0}}, [r2]!",
    "add r1, r1, #16",
    "subs r5, r5, #1",
    "bne 1b",
    "b 9f",
    // stride 2: vld2 puts the even points in q2
    "3:",
    "vmov q0, q8",
    "mov lr, r3",
    "4:",
    "ldr r0, [lr], #4",
    "add r0, r0, r1",
    "vld1.32 {{d2[], d3[]}}, [lr]!",
    "vld2.32 {{d4, d5, d6, d7}}, [r0]",
    "vmla.f32 q0, q2, q1",
    "cmp lr, r4",
    "bne 4b",
    "vst1.32 {{q0}}, [r2]!",
    "add r1, r1, #32",
    "subs r5, r5, #1",
    "bne 3b",
    "9:",
    "pop {{r4-r8, pc}}",
    ".size lookout_armv7_dw_w, .-lookout_armv7_dw_w",
    "",
    ".global lookout_armv7_dw_c",
    ".type lookout_armv7_dw_c, %function",
    ".p2align 2",
    "lookout_armv7_dw_c:",
    "push {{r4-r11, lr}}",
    "ldr r1, [r0, #0]",
    "ldr r2, [r0, #4]",
    "ldr r3, [r0, #8]",
    "ldr r4, [r0, #12]",
    "ldr r5, [r0, #16]",
    "ldr r6, [r0, #20]",
    "ldr r7, [r0, #24]",
    "ldr r8, [r0, #28]",
    "ldr r9, [r0, #32]",
    "ldr r10, [r0, #36]",
    "cmp r8, #0",
    "beq 9f",
    "cmp r7, #0",
    "beq 9f",
    // per position
    "1:",
    "mov r11, #0",
    "mov r12, r7",
    // per block of 4 channels, r11 its byte offset
    "2:",
    "add r0, r4, r11",
    "vld1.32 {{q0}}, [r0]",
    "mov lr, r5",
    // per tap
    "3:",
    "ldr r0, [lr], #4",
    "add r0, r0, r1",
    "add r0, r0, r11",
    "vld1.32 {{q1}}, [r0]",
    "ldr r0, [lr], #4",
    "add r0, r0, r3",
    "add r0, r0, r11",
    "vld1.32 {{q2}}, [r0]",
    "vmla.f32 q0, q1, q2",
    "cmp lr, r6",
    "bne 3b",
    "add r0, r2, r11",
    "vst1.32 {{q0}}, [r0]",
    "add r11, r11, #16",
    "subs r12, r12, #1",
    "bne 2b",
    "add r1, r1, r9",
    "add r2, r2, r10",
    "subs r8, r8, #1",
    "bne 1b",
    "9:",
    "pop {{r4-r11, pc}}",
    ".size lookout_armv7_dw_c, .-lookout_armv7_dw_c",
);

extern "C" {
    fn lookout_armv7_dw_w(args: *const WArgs);
    fn lookout_armv7_dw_c(args: *const CArgs);
}

/// `DepthwiseWF32`: `len` contiguous output points, each `bias` plus every
/// `taps[t] * input[offsets[t] + i * in_stride]`.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseWF32`; the CPU must offer NEON (the registration
/// requires it).
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
    // Whole blocks of 4 points whose reads stay inside the run: stride 2 reads 8 floats for 4
    // points, one past the last point's, so its blocks stop one point early.
    let blocks = match in_stride {
        1 => len / 4,
        2 => len.saturating_sub(1) / 4,
        _ => 0,
    };
    let mut pairs = [[0u32; 2]; MAX_TAPS];
    let fits = n > 0 && n <= MAX_TAPS && blocks > 0 && blocks <= u32::MAX as usize;
    let offsets_fit = offsets
        .iter()
        .all(|o| o.checked_mul(4).is_some_and(|b| i32::try_from(b).is_ok()));
    let done = if fits && offsets_fit {
        for (pair, (tap, offset)) in pairs.iter_mut().zip(taps.iter().zip(offsets)) {
            *pair = [(*offset as i32 * 4) as u32, tap.to_bits()];
        }
        let args = WArgs {
            input,
            output,
            pairs: pairs.as_ptr(),
            pairs_end: pairs[n..].as_ptr(),
            blocks: blocks as u32,
            stride: in_stride as u32,
            bias,
        };
        // SAFETY: block `b` reads `input[offsets[t] + s * (4b + j)]` for `j < 4` (stride 1) or
        // `j < 8` halves of 4 points (stride 2), all inside the caller's run by the choice of
        // `blocks`, and writes `output[4b..4b + 4]`, below `len`. The function saves what AAPCS
        // asks it to and touches no other memory.
        unsafe { lookout_armv7_dw_w(&args) };
        blocks * 4
    } else {
        0
    };
    // SAFETY: the remaining points of the caller's contract, read and written one by one.
    unsafe { super::depthwise_w_points(input, output, taps, offsets, bias, done, len, in_stride) };
}

/// `DepthwiseCF32`: `len` output positions of `channels` contiguous channels each.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseCF32`; the CPU must offer NEON (the registration
/// requires it).
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
    let n = tap_indices.len().min(offsets.len());
    let (tap_indices, offsets) = (&tap_indices[..n], &offsets[..n]);
    let blocks = channels / 4;
    let bytes = |v: isize| v.checked_mul(4).and_then(|b| i32::try_from(b).ok());
    let mut pairs = [[0i32; 2]; MAX_TAPS];
    let mut ok = n > 0 && n <= MAX_TAPS && blocks > 0 && len <= u32::MAX as usize;
    for (pair, (&kix, &off)) in pairs.iter_mut().zip(tap_indices.iter().zip(offsets)) {
        match (
            bytes(off),
            isize::try_from(kix * k_stride).ok().and_then(bytes),
        ) {
            (Some(x), Some(k)) => *pair = [x, k],
            _ => ok = false,
        }
    }
    let (in_bytes, out_bytes) = (bytes(in_stride), bytes(out_stride));
    let done = match (ok, in_bytes, out_bytes) {
        (true, Some(in_stride_bytes), Some(out_stride_bytes)) => {
            let args = CArgs {
                input,
                output,
                kernel,
                bias,
                pairs: pairs.as_ptr(),
                pairs_end: pairs[n..].as_ptr(),
                blocks: blocks as u32,
                len: len as u32,
                in_stride_bytes,
                out_stride_bytes,
            };
            // SAFETY: position `i < len`, channels `c < 4 * blocks <= channels`: reads
            // `input[i * in_stride + offsets[t] + c]`, `kernel[tap_indices[t] * k_stride + c]` and
            // `bias[c]`, writes `output[i * out_stride + c]`, all in the caller's contract.
            unsafe { lookout_armv7_dw_c(&args) };
            blocks * 4
        }
        _ => 0,
    };
    // SAFETY: the remaining channels of the caller's contract, one by one.
    unsafe {
        for i in 0..len as isize {
            let iptr = input.offset(i * in_stride);
            let optr = output.offset(i * out_stride);
            for c in done..channels {
                let mut sum = *bias.add(c);
                for (&kix, &off) in tap_indices.iter().zip(offsets) {
                    sum += *kernel.add(kix * k_stride + c) * *iptr.offset(off).add(c);
                }
                *optr.add(c) = sum;
            }
        }
    }
}

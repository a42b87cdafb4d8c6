//! Kernels tract 0.23.9 lacks (depthwise convolutions; an AVX-512 matrix product that stores vectors), and
//! matrix-product tiers, registered into its registries.
//!
//! tract-linalg picks each single-winner kernel from a registry: `Routine` values collected with
//! `inventory`, looked up per function (`Func::DepthwiseW`, `Func::DepthwiseC`, …) by
//! `tract_linalg::routines::best_for` (an architecture kernel over generic Rust, then the higher
//! instruction-set level plus `boost`, then the name) and cached on first use. Every field of a
//! `Routine` is public, so a crate that links tract-linalg can add its own with
//! `inventory::submit!`; nothing here forks tract.
//!
//! What this module adds, and why tract then uses it:
//! - **x86_64, AVX2 + FMA** (`x86_64.rs`): `DepthwiseC` (tract has none on x86, so its depthwise
//!   convolutions stay channel-first there: `Conv::suggested_axis_changes` asks for channel-last
//!   only where a `DepthwiseC` kernel exists) and `DepthwiseW` with stride 2 and masked tails
//!   (tract's is AVX, stride 1 only, scalar on the last `len % 8` points of every row). Both need
//!   a higher level than tract's AVX kernel, so they win `best_for`. The `DepthwiseC` kernel also clamps what
//!   it stores when a plan node offers bounds (`fused_clamp`, used by `crate::plan::ClampedDepthwise`).
//! - **x86_64, AVX-512** (`x86_64/depthwise512.rs`): the same two on 512-bit vectors (16 channels or points a
//!   vector), one level higher on tract's ladder, so they win wherever AVX-512F is offered; the AVX2 ones then
//!   run only where it is not (and for `DepthwiseW` strides other than 1 and 2, which go to their gathers).
//! - **aarch64** (`aarch64.rs`): `DepthwiseW` for stride 2 at any tap count (tract vectorises
//!   stride 2 only up to four taps, so 3×3 and 5×5 stride-2 layers ran scalar); stride 1 and the
//!   rest go to tract's own kernel. Same level as tract's, so it carries `boost` 1.
//! - **armv7 NEON** (`armv7.rs`): `DepthwiseW` and `DepthwiseC` (tract has none for 32-bit ARM).
//!   NEON intrinsics are unstable on 32-bit ARM, so these are `global_asm!` functions.
//! - **x86_64, AMD with AVX-512** (`x86_64.rs`): a matrix-product *tier* (`tract_linalg::mmm_tiers::MmmTier`,
//!   collected the same way), asked before tract's own, that answers f32 products with the kernel tract's
//!   AVX2 + FMA tier would pick: on Zen 4 tract's 512-bit choices, uncalibrated for AMD at n = 1, were slower.
//! - **x86_64, Intel with AVX-512** (`x86_64.rs`): a second tier that answers f32 products of more than one
//!   column with the kernel whose tiles fit the product best (tract's own rule where it has no cost model):
//!   tract's Intel cost model gave the convolutions over 112 × 112 positions tiles two or three columns wide.
//!   Where its tiles fit the product about as well, it answers with this crate's own matrix-product kernel
//!   (`x86_64/mmm.rs`, registered as an `MmmRoutine`, the registry tract-linalg's kernel macros fill), which stores
//!   whole vectors where tract's AVX-512 kernels store every value on its own.
//!
//! - **x86_64, AMD with AVX2 + FMA and no AVX-512** (`x86_64.rs`): a third tier that answers a convolution
//!   stem's product (a few channels over many positions) with this crate's AVX2 kernel (`x86_64/mmm.rs`, 8 × 8
//!   tiles stored a vector at a time), and leaves every other product to tract's AMD cost model.
//!
//! A registration lives in an object file the linker keeps only when something references it:
//! [`ensure_linked`] does, and [`crate::Model`] calls it before optimising a plan. Tests in
//! `runtime/tests/kernels_registered.rs` assert what tract resolves on the machine they run on.

use tract_core::prelude::DatumType;
use tract_linalg::routines::{best_for, Func, Routine};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "arm")]
mod armv7;
#[cfg(target_arch = "x86_64")]
mod x86_64;

/// The width of the panels [`pack_k_inner_f32`] packs: 16 positions a step of k, one 512-bit vector.
pub const K_INNER_PANEL: usize = 16;

/// What a kernel reading tract's `StridedKMajor` format receives as its panel (`tract_linalg::strided_panel`'s
/// descriptor, three machine words, which tract keeps private): the first value's address, the bytes from one
/// step of k to the next, how many lanes hold values (a view of a channel-first activation: the positions'
/// stride and a short last panel; a packed panel: every lane, a full panel's width of bytes a step).
/// `x86_64/mmm.rs` reads it, `crate::pack` writes it.
#[repr(C)]
pub(crate) struct StridedPanelDesc {
    pub(crate) ptr: *const u8,
    pub(crate) k_byte_stride: isize,
    pub(crate) valid: usize,
}

/// Whether [`pack_k_inner_f32`] packs on this machine (x86_64 with AVX-512F).
pub fn packs_k_inner_f32() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Packs `mn` rows of `k` f32 values (`row_stride` values apart in `source`) into [`K_INNER_PANEL`]-wide panels
/// of `panel_len` values each in `packed` (tract's `PackedFormat` layout: step `kk` of row `16 p + x` at `p *
/// panel_len + 16 kk + x`, zeros past the last row and past `k`), by the vector transpose of
/// `x86_64/pack.rs`. Returns false, having written nothing, where [`packs_k_inner_f32`] is false.
///
/// # Panics
/// If `source` or `packed` is smaller than the shape says.
pub fn pack_k_inner_f32(
    source: &[f32],
    row_stride: usize,
    k: usize,
    mn: usize,
    packed: &mut [f32],
    panel_len: usize,
) -> bool {
    if !packs_k_inner_f32() {
        return false;
    }
    if mn == 0 {
        // Nothing to write.
        return true;
    }
    assert!(row_stride >= k && panel_len >= k * K_INNER_PANEL);
    assert!(source.len() >= (mn - 1) * row_stride + k);
    assert!(packed.len() >= mn.div_ceil(K_INNER_PANEL) * panel_len);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F checked above; the asserts give the function's bounds.
    unsafe {
        x86_64::pack::pack_k_inner(
            source.as_ptr(),
            row_stride,
            k,
            mn,
            packed.as_mut_ptr(),
            panel_len,
        );
    }
    true
}

/// Writes one full [`K_INNER_PANEL`]-wide im2col panel into `panel` (tract's `PackedFormat` layout: step `kk` of
/// position `x` at `16 kk + x`), where the value of step `kk` for position `x` is
/// `input[base + k_offsets[kk] + x * step]`: a convolution's 16 consecutive output positions along one row,
/// `step` its stride along that row, 1 or 2 (`x86_64/pack.rs`). Returns false, having written nothing, where
/// [`packs_k_inner_f32`] is false (the same instruction set) or the stride is another.
///
/// # Panics
/// If a value the panel reads lies past `input`, or `panel` holds fewer than `16 * k_offsets.len()` values.
pub fn im2col_panel_f32(
    input: &[f32],
    base: usize,
    k_offsets: &[usize],
    step: usize,
    panel: &mut [f32],
) -> bool {
    if !packs_k_inner_f32() || !(step == 1 || step == 2) {
        return false;
    }
    let Some(&furthest) = k_offsets.iter().max() else {
        // No step of k: nothing to write.
        return true;
    };
    assert!(base + furthest + (K_INNER_PANEL - 1) * step < input.len());
    assert!(panel.len() >= K_INNER_PANEL * k_offsets.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F checked above; the asserts give the function's bounds (every read is at most `base +
    // furthest + 15 step`).
    unsafe {
        x86_64::pack::im2col_panel(
            input.as_ptr().add(base),
            k_offsets,
            step,
            panel.as_mut_ptr(),
        );
    }
    true
}

/// Points `from..len` of a `DepthwiseW` call, one by one (`bias` plus every `taps[t] * input[offsets[t] + i *
/// in_stride]`): what each ISA's kernel leaves to scalar code (tails, strides or tap counts it does not
/// vectorise), in tract's own order of additions.
///
/// # Safety
/// tract-linalg's contract for `DepthwiseWF32`, for the points `from..len`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
#[allow(clippy::too_many_arguments)]
unsafe fn depthwise_w_points(
    input: *const f32,
    output: *mut f32,
    taps: &[f32],
    offsets: &[isize],
    bias: f32,
    from: usize,
    len: usize,
    in_stride: isize,
) {
    // SAFETY: reads and writes exactly the points of the caller's contract.
    unsafe {
        for i in from..len {
            let mut sum = bias;
            for (tap, offset) in taps.iter().zip(offsets) {
                sum += tap * *input.offset(offset + i as isize * in_stride);
            }
            *output.add(i) = sum;
        }
    }
}

/// A clamp offered to this thread's `DepthwiseC` kernel for the values it stores: how
/// [`crate::plan::ClampedDepthwise`] fuses the clip that follows a depthwise convolution (a ReLU6) into it.
///
/// A kernel's signature is tract's, with no room for an activation, and a depthwise plan node calls it once per
/// row of outputs; a thread-local lets the node say "clamp what you store" for the length of its own evaluation,
/// and lets the kernel say how many values it clamped. The node then clamps whatever was not (values another
/// thread of a multithreaded plan computed, or a kernel that takes no clamp: every one but the x86_64 ones here),
/// which is harmless for the values that were: a clamp is idempotent.
pub(crate) mod fused_clamp {
    use std::cell::Cell;

    thread_local! {
        static BOUNDS: Cell<Option<(f32, f32)>> = const { Cell::new(None) };
        static CLAMPED: Cell<usize> = const { Cell::new(0) };
    }

    /// Runs `f` with `bounds` (low, high) offered to this thread's kernels; returns what `f` returns and how many
    /// values they clamped.
    pub(crate) fn offer<R>(bounds: (f32, f32), f: impl FnOnce() -> R) -> (R, usize) {
        struct Withdraw;
        impl Drop for Withdraw {
            fn drop(&mut self) {
                BOUNDS.set(None);
            }
        }
        BOUNDS.set(Some(bounds));
        CLAMPED.set(0);
        let withdraw = Withdraw;
        let result = f();
        drop(withdraw);
        (result, CLAMPED.get())
    }

    /// For a kernel about to store `values` values: the bounds to clamp them to, if a node offered some (they are
    /// then counted as clamped).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn take(values: usize) -> Option<(f32, f32)> {
        let bounds = BOUNDS.get();
        if bounds.is_some() {
            CLAMPED.set(CLAMPED.get() + values);
        }
        bounds
    }
}

/// Whether tract's `DepthwiseC` kernel on this machine is one that takes `fused_clamp`'s offer (this crate's
/// x86_64 kernel): where it is not, fusing a clip into a depthwise node gains nothing.
pub fn depthwise_c_takes_clamp() -> bool {
    #[cfg(target_arch = "x86_64")]
    return matches!(
        resolved(Func::DepthwiseC),
        Some(x86_64::C_NAME | x86_64::C512_NAME)
    );
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Every kernel name this crate registers starts with this.
pub const NAME_PREFIX: &str = "lookout_";

/// Keeps the object file holding the registrations in every binary that loads a model. Cheap;
/// call it before the first optimisation (tract resolves and caches kernels on first use).
#[inline(never)]
pub fn ensure_linked() {
    #[cfg(target_arch = "x86_64")]
    x86_64::ensure_linked();
    #[cfg(target_arch = "aarch64")]
    aarch64::ensure_linked();
    #[cfg(target_arch = "arm")]
    armv7::ensure_linked();
}

/// The name of the f32 kernel tract resolves for `func` on this machine (`None`: no kernel, tract
/// keeps its scalar loop).
pub fn resolved(func: Func) -> Option<&'static str> {
    ensure_linked();
    best_for(func, DatumType::F32, &tract_linalg::isa::native()).map(|r| r.name())
}

/// This crate's f32 kernels for `func` that this machine can run: on an AVX-512 machine both the AVX-512 and
/// the AVX2 ones, of which tract resolves the first.
pub fn runnable_here(func: Func) -> impl Iterator<Item = &'static Routine> {
    ensure_linked();
    let isa = tract_linalg::isa::native();
    tract_linalg::routines::declared().filter(move |r| {
        r.func == func
            && r.dt() == DatumType::F32
            && r.name().starts_with(NAME_PREFIX)
            && r.runnable_on(&isa)
    })
}

/// For each depthwise function, the kernel of this crate this machine should run: of those it can run, the one
/// highest on tract's instruction-set ladder, then by boost. What [`resolved`] must answer for each function.
pub fn expected_here() -> Vec<(Func, &'static str)> {
    [Func::DepthwiseW, Func::DepthwiseC]
        .into_iter()
        .filter_map(|func| runnable_here(func).max_by_key(|r| (r.isa.level(), r.boost)))
        .map(|r| (r.func, r.name()))
        .collect()
}

/// The matrix-product tier of this crate that speaks on this machine, if one does (its name).
pub fn matmul_tier() -> Option<&'static str> {
    ensure_linked();
    let isa = tract_linalg::isa::native();
    tract_linalg::mmm_tiers::for_isa(&isa)
        .into_iter()
        .map(|tier| tier.name)
        .find(|name| name.starts_with("lookout"))
}

/// One line per depthwise function (which kernel tract resolves here) and the matrix-product tier, for
/// `bench --profile`.
pub fn describe() -> String {
    let mut parts: Vec<String> = [Func::DepthwiseW, Func::DepthwiseC]
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f.name(),
                resolved(*f).unwrap_or("none (scalar loop)")
            )
        })
        .collect();
    parts.push(format!(
        "matrix products: {}",
        matmul_tier().unwrap_or("tract's own choice")
    ));
    parts.join(", ")
}

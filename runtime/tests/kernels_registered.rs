//! Which depthwise kernel tract-linalg resolves on the machine running the tests: ours, registered by
//! `lookout_runtime::kernels`, or the test fails and says what tract picked instead. A tract upgrade that
//! changes the registry, or a link that drops the registrations, fails here rather than silently running
//! tract's scalar loops. Runs natively on x86_64 and under qemu for aarch64 and armv7 (`.cargo/config.toml`).

use lookout_runtime::kernels;
use tract_linalg::isa::Isa;
use tract_linalg::routines::{declared, Func};

/// The kernels this machine must resolve to, spelled out here rather than read back from the registry,
/// which would be empty, and agree, if the registrations were lost.
fn required() -> Vec<(Func, &'static str)> {
    let isa = tract_linalg::isa::native();
    if cfg!(target_arch = "x86_64") {
        if isa.has(Isa::X86_64Avx512f) && isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma) {
            return vec![
                (Func::DepthwiseW, "lookout_x86_64_avx512_depthwise_w_f32"),
                (Func::DepthwiseC, "lookout_x86_64_avx512_depthwise_c_f32"),
            ];
        }
        if isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma) {
            return vec![
                (Func::DepthwiseW, "lookout_x86_64_fma_depthwise_w_f32"),
                (Func::DepthwiseC, "lookout_x86_64_fma_depthwise_c_f32"),
            ];
        }
    } else if cfg!(target_arch = "aarch64") {
        return vec![(Func::DepthwiseW, "lookout_aarch64_depthwise_w_f32")];
    } else if cfg!(target_arch = "arm") && isa.has(Isa::ArmNeon) {
        return vec![
            (Func::DepthwiseW, "lookout_armv7_neon_depthwise_w_f32"),
            (Func::DepthwiseC, "lookout_armv7_neon_depthwise_c_f32"),
        ];
    }
    vec![]
}

fn depthwise_routines() -> String {
    declared()
        .filter(|r| matches!(r.func, Func::DepthwiseW | Func::DepthwiseC))
        .map(|r| {
            format!(
                "{} {} ({:?}, boost {})",
                r.func.name(),
                r.name(),
                r.isa,
                r.boost
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn tract_resolves_our_depthwise_kernels() {
    let isa = tract_linalg::isa::native();
    let required = required();
    println!("machine: {isa:?}; resolved: {}", kernels::describe());
    println!("declared: {}", depthwise_routines());
    if required.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no kernel of ours runs on {isa:?}: a CI machine is expected to run them"
        );
        println!("no kernel of ours runs on {isa:?}: nothing to check");
        return;
    }
    for (func, name) in required {
        let got = kernels::resolved(func);
        assert_eq!(
            got,
            Some(name),
            "tract resolves {} to {got:?} on {isa:?}, not ours; declared: {}",
            func.name(),
            depthwise_routines()
        );
    }
}

/// What tract's depthwise op actually calls goes through these accessors (cached on first use).
#[test]
fn tract_dispatch_returns_our_functions() {
    if required().is_empty() {
        return;
    }
    kernels::ensure_linked();
    let ours = kernels::expected_here();
    for (func, name) in &ours {
        let dispatched = match func {
            Func::DepthwiseW => tract_linalg::routines::depthwise_w_f32().map(|f| f as *const ()),
            Func::DepthwiseC => tract_linalg::routines::depthwise_c_f32().map(|f| f as *const ()),
            _ => continue,
        };
        let routine = declared()
            .find(|r| r.name() == *name)
            .map(|r| match r.factory {
                tract_linalg::routines::RoutineFactory::DepthwiseWF32 { run, .. } => {
                    run as *const ()
                }
                tract_linalg::routines::RoutineFactory::DepthwiseCF32 { run, .. } => {
                    run as *const ()
                }
                _ => std::ptr::null(),
            });
        assert_eq!(
            dispatched,
            routine,
            "{} dispatches to another function than {name}",
            func.name()
        );
    }
    assert!(ours
        .iter()
        .all(|(_, n)| n.starts_with(kernels::NAME_PREFIX)));
}

/// On an AMD processor with AVX-512 our matrix-product tier answers first, and f32 products run the kernel
/// tract's AVX2 + FMA tier picks (the head's matrix-vector product included); elsewhere it stays silent and
/// tract's own choice stands.
#[test]
fn amd_avx512_matrix_products_take_the_fma_kernels() {
    use tract_core::prelude::DatumType;
    use tract_linalg::MmmDispatch;
    let isa = tract_linalg::isa::native();
    if !tier_speaks_here(b"AuthenticAMD", "lookout_amd_avx512_f32") {
        return;
    }
    let without = MmmDispatch::for_isa(isa.without(Isa::X86_64Avx512f));
    // The heads' first layers (MobileNetV3-Small and Lite0 tutorial heads), a 112x112 expansion, a 7x7 one.
    for (m, k, n) in [
        (256, 28224, 1),
        (256, 62720, 1),
        (12544, 16, 96),
        (49, 320, 1280),
    ] {
        let picked = MmmDispatch::native()
            .preferred_kernel(DatumType::F32, Some(m), Some(k), Some(n))
            .map(|kernel| kernel.name().to_string());
        let fma = without
            .preferred_kernel(DatumType::F32, Some(m), Some(k), Some(n))
            .map(|kernel| kernel.name().to_string());
        assert_eq!(picked, fma, "m={m} k={k} n={n}");
        let name = picked.unwrap_or_default();
        assert!(!name.starts_with("avx512"), "m={m} k={k} n={n}: {name}");
    }
}

/// On an Intel processor with AVX-512 our tier answers f32 products of more than one column with this crate's
/// kernel, which stores whole vectors, wherever its 16 x 16 tiles fit the product at least 0.8 as well as the
/// best of tract's, and otherwise with tract's best-fitting tile (tract's Intel cost model gave Lite0's stem
/// and first expansion tiles two or three columns wide); matrix-vector products stay tract's own.
#[test]
fn intel_avx512_matrix_products_take_the_best_fitting_tiles() {
    use tract_core::prelude::DatumType;
    use tract_linalg::MmmDispatch;
    if !tier_speaks_here(b"GenuineIntel", "lookout_intel_avx512_f32") {
        return;
    }
    let picked = |m: usize, k: usize, n: usize| {
        MmmDispatch::native()
            .preferred_kernel(DatumType::F32, Some(m), Some(k), Some(n))
            .map(|kernel| kernel.name().to_string())
            .unwrap_or_default()
    };
    // Shapes as tract hands them over: the stem (a convolution: 32 channels from 27 taps over 112 x 112
    // positions), then einsums: the first expansion (96 channels from 16), a projection to 16 channels and an
    // expansion at 28 x 28 to 240 channels, all on this crate's 16 x 16; a projection to 40 channels (0.95 of
    // 16x8's fit with 14 columns, 0.83 with 16) and an expansion over 14 x 14 positions (196 columns: 14 fills
    // them), on its 16 x 14; a 7 x 7 expansion (49 columns: 7 fills them, 32x5's 5 to 0.98) on its 16 x 7; a
    // projection to 24 channels (0.75 of 16x12's fit with 16 columns) on its 16 x 24.
    for (m, k, n, expected) in [
        (32, 27, 12544, "lookout_avx512_mmm_f32_16x16"),
        (12544, 16, 96, "lookout_avx512_mmm_f32_16x16"),
        (12544, 32, 16, "lookout_avx512_mmm_f32_16x16"),
        (784, 40, 240, "lookout_avx512_mmm_f32_16x16"),
        (784, 240, 40, "lookout_avx512_mmm_f32_16x14"),
        (672, 112, 196, "lookout_avx512_mmm_f32_16x14"),
        (1152, 192, 49, "lookout_avx512_mmm_f32_16x7"),
        (3136, 144, 24, "lookout_avx512_mmm_f32_16x24"),
    ] {
        assert_eq!(picked(m, k, n), expected, "m={m} k={k} n={n}");
    }
    // The heads' first layers (MobileNetV3-Small and Lite0 tutorial heads): tract's matrix-vector choice.
    for (m, k) in [(256, 28224), (256, 62720)] {
        assert_eq!(picked(m, k, 1), "avx512_mmm_f32_128x1", "m={m} k={k} n=1");
    }
}

/// On an AMD processor with AVX2 + FMA and no AVX-512 (Zen 1 to 3) our tier answers a convolution stem's product
/// (a few channels from 27 taps over 112 x 112 positions) with this crate's AVX2 kernel, and leaves every other
/// product to tract's cost model; elsewhere it stays silent.
#[test]
fn amd_avx2_stems_take_our_kernel() {
    use tract_core::prelude::DatumType;
    use tract_linalg::MmmDispatch;
    let isa = tract_linalg::isa::native();
    let name = "lookout_amd_fma_f32";
    let speaking: Vec<&str> = tract_linalg::mmm_tiers::for_isa(&isa)
        .into_iter()
        .map(|tier| tier.name)
        .collect();
    let applies = cfg!(target_arch = "x86_64")
        && vendor() == *b"AuthenticAMD"
        && !isa.has(Isa::X86_64Avx512f)
        && isa.has(Isa::X86_64Avx2)
        && isa.has(Isa::X86_64Fma)
        && std::env::var("LOOKOUT_MATMUL_TIER").as_deref() != Ok("off");
    assert_eq!(
        speaking.contains(&name),
        applies,
        "{name} among {speaking:?}"
    );
    if !applies {
        return;
    }
    assert_eq!(kernels::matmul_tier(), Some(name));
    let picked = |m: usize, k: usize, n: usize| {
        MmmDispatch::native()
            .preferred_kernel(DatumType::F32, Some(m), Some(k), Some(n))
            .map(|kernel| kernel.name().to_string())
            .unwrap_or_default()
    };
    // The stems of Lite0 (32 channels) and MobileNetV3-Small (16).
    for (m, k, n) in [(32, 27, 12544), (16, 27, 12544)] {
        assert_eq!(
            picked(m, k, n),
            "lookout_fma_mmm_f32_8x8",
            "m={m} k={k} n={n}"
        );
    }
    // A 112 x 112 expansion, a projection, a 7 x 7 layer, a head: tract's own kernels.
    for (m, k, n) in [
        (12544, 16, 96),
        (3136, 144, 24),
        (1152, 192, 49),
        (256, 62720, 1),
    ] {
        let kernel = picked(m, k, n);
        assert!(
            kernel.starts_with("fma_mmm_f32"),
            "m={m} k={k} n={n}: {kernel}"
        );
    }
}

#[cfg(target_arch = "x86_64")]
fn vendor() -> [u8; 12] {
    let leaf = std::arch::x86_64::__cpuid(0);
    let mut vendor = [0; 12];
    for (chunk, register) in vendor.chunks_mut(4).zip([leaf.ebx, leaf.edx, leaf.ecx]) {
        chunk.copy_from_slice(&register.to_le_bytes());
    }
    vendor
}

#[cfg(not(target_arch = "x86_64"))]
fn vendor() -> [u8; 12] {
    [0; 12]
}

/// Whether the tier `name`, measured on `vendor_id`'s processors with AVX-512, must speak on this machine:
/// asserts that it does where it must (and answers before any other), and that it is silent elsewhere, whichever
/// of our tiers answers first.
fn tier_speaks_here(vendor_id: &[u8; 12], name: &str) -> bool {
    let isa = tract_linalg::isa::native();
    let tier = kernels::matmul_tier();
    let speaking: Vec<&str> = tract_linalg::mmm_tiers::for_isa(&isa)
        .into_iter()
        .map(|tier| tier.name)
        .filter(|tier| tier.starts_with(kernels::NAME_PREFIX))
        .collect();
    let switched_off = std::env::var("LOOKOUT_MATMUL_TIER").as_deref() == Ok("off");
    let applies = cfg!(target_arch = "x86_64")
        && vendor() == *vendor_id
        && isa.has(Isa::X86_64Avx512f)
        && isa.has(Isa::X86_64Avx2)
        && isa.has(Isa::X86_64Fma)
        && !switched_off;
    println!(
        "machine: {isa:?}, vendor {}; our tiers speaking: {speaking:?}",
        String::from_utf8_lossy(&vendor())
    );
    if applies {
        assert_eq!(tier, Some(name));
    } else {
        assert!(!speaking.contains(&name), "{name} speaks where it must not");
    }
    applies
}

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
    let tier = kernels::matmul_tier();
    let amd = cfg!(target_arch = "x86_64") && amd_cpu();
    let switched_off = std::env::var("LOOKOUT_MATMUL_TIER").as_deref() == Ok("off");
    let applies = amd
        && isa.has(Isa::X86_64Avx512f)
        && isa.has(Isa::X86_64Avx2)
        && isa.has(Isa::X86_64Fma)
        && !switched_off;
    println!("machine: {isa:?}, AMD: {amd}; tier: {tier:?}");
    if !applies {
        assert_eq!(tier, None, "the tier speaks where it must not");
        return;
    }
    assert_eq!(tier, Some("lookout_amd_avx512_f32"));
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

#[cfg(target_arch = "x86_64")]
fn amd_cpu() -> bool {
    let leaf = std::arch::x86_64::__cpuid(0);
    let vendor: Vec<u8> = [leaf.ebx, leaf.edx, leaf.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    vendor == b"AuthenticAMD"
}

#[cfg(not(target_arch = "x86_64"))]
fn amd_cpu() -> bool {
    false
}

//! Helpers for the end-to-end tests: find the real `lookout` and `lookout-edge` binaries and run them.
//!
//! `cargo test --workspace` builds both binaries before any test runs (their packages have integration tests), into
//! the same target directory as this test executable; a test run on its own (`cargo test -p lookout-e2e`) builds
//! them first, with the same profile.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod browser;
pub mod mosquitto;
pub mod scene;

pub use lookout_testdata::{require_shared, shared_dir};

/// The directory holding the binaries of the profile this test was built with (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// Builds the workspace binaries once per test process when they are missing.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        if dir.join("lookout").is_file() && dir.join("lookout-edge").is_file() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "lookout-host",
            "-p",
            "lookout-edge",
            "--bins",
        ]);
        if profile != "debug" {
            cmd.args(["--profile", profile]);
        }
        let status = cmd.status().expect("running cargo build for the binaries");
        assert!(status.success(), "building lookout and lookout-edge failed");
    });
}

/// Path of a workspace binary (`lookout` or `lookout-edge`), built if needed.
pub fn bin(name: &str) -> PathBuf {
    ensure_built();
    let path = profile_dir().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A `Command` for a workspace binary.
pub fn command(name: &str) -> Command {
    Command::new(bin(name))
}

/// Runs a command and returns its output, printing stdout/stderr on failure for the test log.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawning the binary");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The photos of one class of the shared cats-vs-dogs set (`Cat`, `Dog`), sorted by name.
pub fn photos(shared: &Path, class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared.join("data/cats-vs-dogs").join(class))
        .expect("cats-vs-dogs class folder")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

/// Copies `files` into `dir` (a data set must look like a user's own folder, so no symlinks into ../shared).
pub fn copy_into(dir: &Path, files: &[PathBuf]) {
    std::fs::create_dir_all(dir).expect("class folder");
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().expect("file name"))).expect("copy photo");
    }
}

/// `lookout fit` as a user types it with the shared EfficientNet-Lite0 ONNX file and a pooled head:
/// `lookout fit --data DATA --out BUNDLE --backbone <lite0>.onnx --preprocess tf-inception --pool avg --epochs N
/// --precision f32 --json EXTRA…`. Fails the test (with both outputs) when it fails; returns its output. f32:
/// these tests hold the bundle to the float model and to tolerances measured on f32; the default precision (the
/// gated q4) has its own tests (`first_path.rs`, `workflow.rs`'s q4 bundle).
pub fn fit_pooled_lite0(
    shared: &Path,
    data: &Path,
    bundle: &Path,
    epochs: usize,
    extra: &[&str],
) -> Output {
    run_ok(
        command("lookout")
            .args(["fit", "--data"])
            .arg(data)
            .arg("--out")
            .arg(bundle)
            .arg("--backbone")
            .arg(shared.join("models/efficientnet_lite0_features_dynbatch.onnx"))
            .args(["--preprocess", "tf-inception", "--pool", "avg", "--epochs"])
            .arg(epochs.to_string())
            .args(["--precision", "f32", "--json"])
            .args(extra),
    )
}

/// A small real bundle for tests of what happens around the model (preview, MQTT): `per_class` photos of each
/// class from the shared set, a pooled EfficientNet-Lite0 head fitted in `dir` ([`fit_pooled_lite0`], 10
/// epochs). The tests using it check that what they show or send is what the model said, not that the model
/// is right.
pub fn fit_small_lite0(shared: &Path, dir: &Path, per_class: usize) -> PathBuf {
    let data = dir.join("PetImages");
    copy_into(&data.join("Cat"), &photos(shared, "Cat")[..per_class]);
    copy_into(&data.join("Dog"), &photos(shared, "Dog")[..per_class]);
    let bundle = dir.join("pets.lookout");
    fit_pooled_lite0(shared, &data, &bundle, 10, &[]);
    bundle
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The program's path on `PATH`, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Parses JSON lines (one object per line), ignoring blank lines.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The edge binary cross-built for the Pi, run under qemu-user (see `.cargo/config.toml` and `.ci/run`).
pub mod cross {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::{Mutex, OnceLock};

    /// One emulated Pi CPU.
    #[derive(Debug, Clone, Copy)]
    pub struct Target {
        /// Human name for messages.
        pub name: &'static str,
        /// Rust target triple the binary is built for.
        pub triple: &'static str,
        /// qemu-user program and its CPU/sysroot arguments.
        pub qemu: &'static [&'static str],
        /// tract's CPU detection cannot read the emulated CPU (qemu shows the host's /proc/cpuinfo): tell it.
        pub env: &'static [(&'static str, &'static str)],
        /// Largest score difference against x86_64 accepted for an f32 bundle. Measured on the end-to-end test's
        /// bundle: aarch64 1.2e-7, armv7 1.2e-7.
        pub tolerance: f64,
    }

    /// The Pi 4 (64-bit OS) and the 32-bit OS on ARMv7.
    pub const TARGETS: &[Target] = &[
        Target {
            name: "aarch64 (Pi 4, Cortex-A72)",
            triple: "aarch64-unknown-linux-gnu",
            qemu: &[
                "qemu-aarch64",
                "-cpu",
                "cortex-a72",
                "-L",
                "/usr/aarch64-linux-gnu",
            ],
            env: &[("TRACT_CPU_AARCH64_KIND", "a72")],
            tolerance: 1e-5,
        },
        Target {
            name: "armv7 (32-bit, Cortex-A15 + NEON)",
            triple: "armv7-unknown-linux-gnueabihf",
            qemu: &[
                "qemu-arm",
                "-cpu",
                "cortex-a15",
                "-L",
                "/usr/arm-linux-gnueabihf",
            ],
            env: &[("TRACT_CPU_ARM32_NEON", "true")],
            tolerance: 1e-5,
        },
    ];

    /// Largest score difference of an f16 bundle on the Pi 5's FP16 kernels against the f32 bundle on x86_64.
    /// Measured on the end-to-end test's bundle: 3.8e-4.
    pub const FP16_TOLERANCE: f64 = 2e-3;

    /// `target/<triple>/<profile>/lookout-edge` beside this test's own profile directory, cross-built here
    /// (once per test process, said once) when it is not there yet, so that `cargo test --workspace` alone
    /// tests what `.ci/run` does. `None` when it cannot be built (the target or its linker is not installed).
    fn cross_binary(triple: &str) -> Option<PathBuf> {
        static BUILT: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
        let exe = std::env::current_exe().ok()?;
        let profile_dir = exe.parent()?.parent()?;
        let profile = profile_dir.file_name()?.to_str()?.to_string();
        let target_dir = profile_dir.parent()?;
        let bin = target_dir.join(triple).join(&profile).join("lookout-edge");
        let mut built = BUILT.get_or_init(Mutex::default).lock().ok()?;
        let ok = *built.entry(triple.to_string()).or_insert_with(|| {
            if bin.is_file() {
                return true;
            }
            eprintln!("building lookout-edge for {triple} (once; a few minutes the first time)");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "lookout-edge", "--target", triple])
                .env("CARGO_TARGET_DIR", target_dir);
            if profile == "release" {
                cmd.arg("--release");
            }
            match cmd.status() {
                Ok(status) if status.success() => true,
                _ => {
                    eprintln!("could not build lookout-edge for {triple}");
                    false
                }
            }
        });
        (ok && bin.is_file()).then_some(bin)
    }

    fn qemu_command(qemu: &[&str], env: &[(&str, &str)], bin: PathBuf) -> Option<Command> {
        let program = qemu.first()?;
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
            .unwrap_or(false);
        if !found {
            return None;
        }
        let mut cmd = Command::new(program);
        cmd.args(&qemu[1..]).arg(bin);
        cmd.envs(env.iter().copied());
        Some(cmd)
    }

    /// A command running the cross-built edge binary for `target` under qemu, if both are there.
    pub fn edge_command(target: &Target) -> Option<Command> {
        qemu_command(target.qemu, target.env, cross_binary(target.triple)?)
    }

    /// The aarch64 edge binary on an emulated Cortex-A76 (Pi 5), where tract uses its FP16 kernels.
    pub fn pi5_fp16_command() -> Option<Command> {
        qemu_command(
            &[
                "qemu-aarch64",
                "-cpu",
                "cortex-a76",
                "-L",
                "/usr/aarch64-linux-gnu",
            ],
            &[("TRACT_CPU_AARCH64_KIND", "a75")],
            cross_binary("aarch64-unknown-linux-gnu")?,
        )
    }

    /// A target whose binary or qemu is missing: fails under CI (which builds both), a loud skip elsewhere.
    pub fn skip_message(triple: &str) {
        lookout_testdata::missing(
            &format!("the {triple} agreement check"),
            &format!(
                "the cross-built edge binary could not be built or qemu-user is missing: install the target \
                 and its linker (rustup target add {triple}; apt-get install gcc-aarch64-linux-gnu \
                 gcc-arm-linux-gnueabihf qemu-user; .ci/run does)."
            ),
        );
    }
}

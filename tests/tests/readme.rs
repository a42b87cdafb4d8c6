//! Every `lookout` / `lookout-edge` command of README.md, run exactly as written, in order, in one folder set
//! up as the README assumes (`PetImages/`, `photos/`, `some/`, `other-photos/`, an
//! `efficientnet_lite0_features.onnx`).
//!
//! Lines are read from the README's `sh` blocks (continuation lines joined) and run with `bash -c` with both
//! binaries first on `PATH`; `cargo run --release -p lookout-host -- ARGS` runs as `lookout ARGS` (the same
//! program, without a release build inside the test). Every such line must be listed in [`EXPECTED`]: a README
//! command without a test fails here. What a line needs that this machine lacks (download.pytorch.org, a V4L2
//! camera, a GPIO chip) must fail with one clear `error:` line, checked; `rpicam-vid` (the Pi camera's own
//! program) is stood in for by a script that writes JPEGs to stdout, so the pipe runs the same code path.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lookout_e2e::{copy_into, photos, require_shared};

/// What a README line must do here.
enum Expect {
    /// Succeed.
    Runs,
    /// Fail with one `error:` line holding all of these.
    FailsWith(&'static [&'static str]),
    /// Succeed where the resource is there; otherwise fail with one `error:` line holding all of these.
    RunsOrFailsWith(&'static [&'static str]),
}

/// Every command line of the README (as it stands there, continuation lines joined with one space), and what it
/// must do on a test machine.
const EXPECTED: &[(&str, Expect)] = &[
    (
        "cargo run --release -p lookout-host -- fit --data PetImages --out pets.lookout",
        // Needs download.pytorch.org (the default backbone's weights).
        Expect::RunsOrFailsWith(&[
            "mobilenet_v3_large is in the catalogue",
            "could not be fetched",
            "--backbone efficientnet_lite0",
        ]),
    ),
    (
        "cargo run --release -p lookout-host -- backbone pull efficientnet_lite0",
        Expect::Runs,
    ),
    (
        "cargo run --release -p lookout-host -- fit --data PetImages --backbone efficientnet_lite0 --out pets.lookout",
        Expect::Runs,
    ),
    ("lookout backbone pull efficientnet_lite0", Expect::Runs),
    ("lookout backbone list", Expect::Runs),
    ("lookout inspect efficientnet_lite0", Expect::Runs),
    (
        "lookout inspect efficientnet_lite0_features.onnx --depth 2",
        Expect::Runs,
    ),
    (
        "lookout extract --data PetImages --backbone efficientnet_lite0 --out features/    # --pool avg, --batch 8",
        Expect::Runs,
    ),
    (
        "lookout extract --data PetImages --backbone efficientnet_lite0 --out features-aug/ --augment 4",
        Expect::Runs,
    ),
    (
        "lookout train --features features/ --out run/                 # --head linear|mlp, --pool avg, --patience 3",
        Expect::Runs,
    ),
    ("lookout evaluate --run run/", Expect::Runs),
    (
        "lookout evaluate --run run/ --ood other-photos/",
        Expect::Runs,
    ),
    (
        "lookout predict --run run/ some/*.jpg --grid grid.png          # the tutorial's 3×3 picture",
        Expect::Runs,
    ),
    (
        "lookout export --run run/ --out pets.lookout                   # --precision auto (the default) | q4 | f16-q4 | f32-q4head | f16 | f32",
        Expect::Runs,
    ),
    (
        "lookout evaluate --model pets.lookout --run run/ --json        # the bundle on the test photos, as the Pi runs it",
        Expect::Runs,
    ),
    (
        "lookout evaluate --model pets.lookout --run run/ --conditions",
        Expect::Runs,
    ),
    ("lookout-edge info --model pets.lookout", Expect::Runs),
    (
        "lookout-edge classify --model pets.lookout photos/ --json",
        Expect::Runs,
    ),
    (
        "lookout-edge watch --model pets.lookout --source v4l2:/dev/video0 --smooth 5 --threshold 0.8 --gpio gpiochip0:17 --when Cat",
        // No GPIO chip and no camera on a test machine: the first thing missing says so.
        Expect::FailsWith(&["/dev/gpiochip0"]),
    ),
    (
        "rpicam-vid -t 0 -n --codec mjpeg -o - | lookout-edge watch --model pets.lookout --source mjpeg:- --json",
        Expect::Runs,
    ),
    (
        "lookout-edge bench --model pets.lookout --threads 4 --profile   # latency, memory, and where the time goes",
        Expect::Runs,
    ),
    (
        "lookout fit --data PetImages --backbone efficientnet_lite0_features.onnx --preprocess tf-inception --out onnx-pets.lookout",
        Expect::Runs,
    ),
    (
        "lookout export --run onnx-pets.lookout-work/run --out onnx-pets.lookout --onnx pets.onnx",
        Expect::Runs,
    ),
];

/// The README's command lines: in `sh` blocks, lines that run `lookout`, `lookout-edge` or the host through
/// `cargo run`, continuation lines joined.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh" && !in_sh;
            continue;
        }
        if !in_sh {
            continue;
        }
        let joined = if pending.is_empty() {
            line.trim().to_string()
        } else {
            format!("{pending} {}", line.trim())
        };
        if let Some(head) = joined.strip_suffix('\\') {
            pending = head.trim_end().to_string();
            continue;
        }
        pending.clear();
        let runs_ours = joined.starts_with("lookout ")
            || joined.starts_with("lookout-edge ")
            || joined.contains("| lookout-edge ")
            || joined.starts_with("cargo run --release -p lookout-host --");
        if runs_ours {
            commands.push(joined);
        }
    }
    commands
}

/// A folder with `lookout`, `lookout-edge` and a stand-in `rpicam-vid`, to put first on `PATH`.
fn bin_dir(root: &Path, camera_frames: &[PathBuf]) -> PathBuf {
    let dir = root.join("bin");
    fs::create_dir_all(&dir).expect("bin dir");
    for name in ["lookout", "lookout-edge"] {
        std::os::unix::fs::symlink(lookout_e2e::bin(name), dir.join(name)).expect("link binary");
    }
    // The Pi camera's program writes concatenated JPEGs (MJPEG) to stdout: so does this one, then ends.
    let frames: Vec<String> = camera_frames
        .iter()
        .map(|p| format!("'{}'", p.display()))
        .collect();
    let script = format!("#!/bin/sh\nexec cat {}\n", frames.join(" "));
    let rpicam = dir.join("rpicam-vid");
    fs::write(&rpicam, script).expect("rpicam-vid stand-in");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&rpicam, fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn every_readme_command_runs_as_written() {
    let shared = require_shared!();
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = fs::read_to_string(&readme_path).expect("README.md");
    let commands = readme_commands(&readme);

    // Every README command has an expectation, and every expectation is still in the README.
    for command in &commands {
        assert!(
            EXPECTED.iter().any(|(line, _)| line == command),
            "README command not covered by tests/tests/readme.rs: {command}"
        );
    }
    for (line, _) in EXPECTED {
        assert!(
            commands.iter().any(|c| c == line),
            "tests/tests/readme.rs expects a README command that is gone: {line}"
        );
    }

    // The folder the README's commands assume.
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let (cats, dogs) = (photos(&shared, "Cat"), photos(&shared, "Dog"));
    copy_into(&root.join("PetImages/Cat"), &cats[..10]);
    copy_into(&root.join("PetImages/Dog"), &dogs[..10]);
    copy_into(&root.join("photos"), &[cats[20].clone(), dogs[20].clone()]);
    copy_into(&root.join("some"), &[cats[21].clone(), dogs[21].clone()]);
    // Photos of other things (the ImageNet sample's tench, hammerhead, hen, …): none of the classes.
    let imagenet = shared.join("data/imagenet-sample");
    let others: Vec<_> = [
        "n01440764_tench.JPEG",
        "n01494475_hammerhead.JPEG",
        "n01514859_hen.JPEG",
    ]
    .iter()
    .map(|name| imagenet.join(name))
    .collect();
    copy_into(&root.join("other-photos"), &others);
    fs::copy(
        shared.join("models/efficientnet_lite0_features_dynbatch.onnx"),
        root.join("efficientnet_lite0_features.onnx"),
    )
    .expect("copy the ONNX backbone");
    let bin = bin_dir(root, &cats[30..33]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    for command in &commands {
        let (_, expect) = EXPECTED
            .iter()
            .find(|(line, _)| line == command)
            .expect("checked above");
        let shell_line = command.replacen("cargo run --release -p lookout-host --", "lookout", 1);
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &shell_line])
            .current_dir(root)
            .env("PATH", &path)
            .env("LOOKOUT_CACHE", root.join("cache"))
            .output()
            .expect("running bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        let check_error = |needles: &[&str]| {
            assert!(
                !out.status.success(),
                "{command}: expected to fail here, but it ran:\n{stdout}"
            );
            assert_eq!(errors.len(), 1, "{command}: one error line, got:\n{stderr}");
            for needle in needles {
                assert!(
                    errors[0].contains(needle),
                    "{command}: {needle:?} missing from the error: {}",
                    errors[0]
                );
            }
        };
        match expect {
            Expect::Runs => assert!(
                out.status.success(),
                "{command} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                out.status
            ),
            Expect::FailsWith(needles) => check_error(needles),
            Expect::RunsOrFailsWith(needles) => {
                if !out.status.success() {
                    check_error(needles);
                }
            }
        }
        eprintln!("ran: {command}");
    }

    // What the commands were for.
    for made in [
        "pets.lookout",
        "pets.onnx",
        "grid.png",
        "features/manifest.json",
        "run/curves.png",
    ] {
        assert!(root.join(made).is_file(), "{made} was not written");
    }
}

//! Every `lookout` / `lookout-edge` command of README.md and of every page in `docs/`, run exactly as written, in
//! order, in one folder set up as the pages assume (`PetImages/`, `photos/`, `some/`, `other-photos/`,
//! `porch-empty/`, `porch.password`, an `efficientnet_lite0_features.onnx`).
//!
//! Lines are read from the pages' `sh` blocks (continuation lines joined), README.md first and then the pages of
//! [`DOCS`] in that order (every `docs/*.md` must be listed there: a page this test does not read fails it), and
//! run with `bash -c` with both binaries first on `PATH`; `cargo run --release -p lookout-host -- ARGS` runs as
//! `lookout ARGS` (the same program, without a release build inside the test). A line shown on several pages runs
//! once, where it first appears. Every such line must be listed in [`EXPECTED`]: a documented command without a
//! test fails here. What a line needs that this machine lacks must fail with one clear `error:` line, checked
//! (download.pytorch.org, a GPIO chip, a serial port, an MQTT broker, a `.pth` file), or, for a camera that
//! `watch` waits for (a V4L2 device, an IP camera), print the one line saying so, after which the test ends it
//! with SIGTERM as Ctrl-C would; `rpicam-vid` (the Pi camera's own program) is stood in for by a script that
//! writes JPEGs to stdout, so the pipe runs the same code path. The second test checks that every relative link
//! of these pages points to a file that exists.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lookout_e2e::{copy_into, photos, require_shared};

/// The pages of `docs/` whose commands run, in this order, after README.md's (later pages use what earlier ones
/// made: the workflow's `run/`, the camera page's `porch.lookout`).
const DOCS: &[&str] = &[
    "workflow.md",
    "defaults.md",
    "pi.md",
    "home.md",
    "camera.md",
    "cameras.md",
    "fleet.md",
    "firmware.md",
    "rejection.md",
    "augmentation.md",
    "quantization.md",
    "performance.md",
    "conformance.md",
    "bundle-format.md",
    "crates.md",
    "known-limits.md",
];

/// What a documented line must do here.
enum Expect {
    /// Succeed.
    Runs,
    /// Fail with one `error:` line holding all of these.
    FailsWith(&'static [&'static str]),
    /// Succeed where the resource is there; otherwise fail with one `error:` line holding all of these.
    RunsOrFailsWith(&'static [&'static str]),
    /// A `watch` whose camera is not there: it says so on one line holding all of these (no `error:` line) and
    /// waits for the camera; the test then ends it with SIGTERM.
    WaitsFor(&'static [&'static str]),
}

/// What a V4L2 `watch` prints on a machine without the camera, then retries with backoff.
const NO_V4L2_CAMERA: &[&str] = &["v4l2:/dev/video0", "is the camera plugged in"];
/// What `watch` prints when the IP camera of the pages (192.168.1.20) does not answer, then retries.
const NO_IP_CAMERA: &[&str] = &["192.168.1.20", "reconnecting with backoff"];
/// What `lookout publish` and `lookout fleet` print without the pages' broker (`broker.local`).
const NO_BROKER: &[&str] = &["cannot reach the MQTT broker at broker.local:1883"];

/// Every command line of the pages (as it stands there, continuation lines joined with one space), and what it
/// must do on a test machine.
const EXPECTED: &[(&str, Expect)] = &[
    // README.md
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
    (
        "lookout fit --data PetImages --backbone efficientnet_lite0 --out pets.lookout",
        Expect::Runs,
    ),
    (
        "lookout evaluate --model pets.lookout --run pets.lookout-work/run --conditions",
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
    // docs/workflow.md
    (
        "lookout backbone import mobilenet_v3_large-5c1a4163.pth --arch mobilenet_v3_large",
        // torchvision's weights file comes from download.pytorch.org, which test machines cannot reach.
        Expect::FailsWith(&["mobilenet_v3_large-5c1a4163.pth", "No such file"]),
    ),
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
    (
        "lookout fit --data PetImages --backbone efficientnet_lite0_features.onnx --preprocess tf-inception --out onnx-pets.lookout",
        Expect::Runs,
    ),
    (
        "lookout export --run onnx-pets.lookout-work/run --out onnx-pets.lookout --onnx pets.onnx",
        Expect::Runs,
    ),
    // docs/pi.md
    (
        "lookout-edge watch --model pets.lookout --source dir:photos --fps 0 --max-frames 2",
        Expect::Runs,
    ),
    (
        "lookout-edge watch --model pets.lookout --source v4l2:/dev/video0 --serial /dev/ttyUSB0 --baud 115200",
        // No serial adapter on a test machine.
        Expect::FailsWith(&["opening serial port /dev/ttyUSB0"]),
    ),
    // docs/home.md
    (
        "lookout-edge watch --model pets.lookout --source v4l2:/dev/video0 --on-unknown --mqtt mqtt://homeassistant.local:1883/lookout/cam1 --mqtt-discovery",
        // A broker that is not there is waited for too (tests/tests/mqtt.rs runs these flags against mosquitto).
        Expect::WaitsFor(NO_V4L2_CAMERA),
    ),
    (
        "lookout-edge watch --model pets.lookout --source v4l2:/dev/video0 --capture to-label/ --capture-when uncertain",
        Expect::WaitsFor(NO_V4L2_CAMERA),
    ),
    (
        "lookout fit --data PetImages --backbone efficientnet_lite0 --out pets-v2.lookout",
        Expect::Runs,
    ),
    // docs/camera.md
    (
        "lookout-edge watch --model pets.lookout --source v4l2:/dev/video0 --zone bowl=0.3,0.4,0.4,0.55 --capture captured/ --capture-when unknown",
        Expect::WaitsFor(NO_V4L2_CAMERA),
    ),
    (
        "lookout fit --data PetImages --background porch-empty/ --augment 4 --augment-policy camera --backbone efficientnet_lite0 --out porch.lookout",
        Expect::Runs,
    ),
    (
        "lookout-edge watch --model porch.lookout --source v4l2:/dev/video0 --zone bowl=0.3,0.4,0.4,0.55 --mqtt mqtt://homeassistant.local/home/porch --mqtt-discovery",
        Expect::WaitsFor(NO_V4L2_CAMERA),
    ),
    // docs/cameras.md
    (
        "lookout-edge watch --model porch.lookout --source rtsp://viewer@192.168.1.20:554/stream1 --source-password-file porch.password --fps 5 --motion",
        Expect::WaitsFor(NO_IP_CAMERA),
    ),
    // docs/fleet.md
    (
        "lookout fit --data PetImages --background porch-empty/ --backbone efficientnet_lite0 --out porch-v2.lookout",
        Expect::Runs,
    ),
    (
        "lookout publish --mqtt mqtt://broker.local/home porch-v2.lookout            # every camera of home/",
        Expect::FailsWith(NO_BROKER),
    ),
    (
        "lookout publish --mqtt mqtt://broker.local/home porch-v2.lookout --cameras porch,garage --json",
        Expect::FailsWith(NO_BROKER),
    ),
    (
        "lookout fleet --mqtt mqtt://broker.local/home                              # what each camera runs",
        Expect::FailsWith(NO_BROKER),
    ),
    // docs/rejection.md
    (
        "lookout-edge classify --model pets.lookout other-photos/ --json",
        Expect::Runs,
    ),
    // docs/augmentation.md
    (
        "lookout train --features features-aug/ --out run-aug/",
        Expect::Runs,
    ),
    // docs/quantization.md
    (
        "lookout export --run run/ --out pets-q4.lookout --precision q4",
        Expect::Runs,
    ),
    (
        "lookout export --run run/ --out pets-f32-q4head.lookout --precision f32-q4head",
        Expect::Runs,
    ),
    (
        "lookout-edge bench --model pets-q4.lookout --threads 1 --iters 100",
        Expect::Runs,
    ),
    (
        "lookout-edge bench --model pets-q4.lookout --threads 1 --iters 100 --weights compact",
        Expect::Runs,
    ),
    // docs/performance.md
    (
        "lookout export --run onnx-pets.lookout-work/run --out model.lookout --precision f32 --onnx model.onnx",
        Expect::Runs,
    ),
    (
        "lookout-edge bench --model model.lookout --threads 1 --iters 100",
        Expect::Runs,
    ),
    (
        "lookout-edge bench --model pets.lookout --threads 1 --iters 30 --profile",
        Expect::Runs,
    ),
    // docs/conformance.md
    (
        "lookout evaluate --model pets.lookout --run pets.lookout-work/run --json",
        Expect::Runs,
    ),
    (
        "lookout export --run onnx-pets.lookout-work/run --precision f32 --out onnx-pets-f32.lookout",
        Expect::Runs,
    ),
];

/// A page's command lines: in `sh` blocks, lines that run `lookout`, `lookout-edge` or the host through
/// `cargo run`, continuation lines joined.
fn page_commands(page: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in page.lines() {
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

/// The repository's root.
fn repo_root() -> PathBuf {
    lookout_testdata::crate_dir(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// README.md, then the pages of [`DOCS`]; fails when `docs/` holds a page that is not listed.
fn pages() -> Vec<(String, String)> {
    let root = repo_root();
    let mut on_disk: Vec<String> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = DOCS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/tests/readme.rs: DOCS must list every docs/*.md page, and only those"
    );
    let mut pages = vec![(
        "README.md".to_string(),
        fs::read_to_string(root.join("README.md")).expect("README.md"),
    )];
    for name in DOCS {
        let path = format!("docs/{name}");
        let text = fs::read_to_string(root.join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        pages.push((path, text));
    }
    pages
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
fn every_documented_command_runs_as_written() {
    let shared = require_shared!();
    let mut commands: Vec<(String, String)> = Vec::new();
    for (page, text) in pages() {
        for command in page_commands(&text) {
            commands.push((page.clone(), command));
        }
    }

    // Every documented command has an expectation, and every expectation is still documented.
    for (page, command) in &commands {
        assert!(
            EXPECTED.iter().any(|(line, _)| line == command),
            "{page}: command not covered by tests/tests/readme.rs: {command}"
        );
    }
    for (line, _) in EXPECTED {
        assert!(
            commands.iter().any(|(_, c)| c == line),
            "tests/tests/readme.rs expects a command that no page shows any more: {line}"
        );
    }

    // The folder the pages' commands assume.
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let (cats, dogs) = (photos(&shared, "Cat"), photos(&shared, "Dog"));
    copy_into(&root.join("PetImages/Cat"), &cats[..10]);
    copy_into(&root.join("PetImages/Dog"), &dogs[..10]);
    copy_into(&root.join("photos"), &[cats[20].clone(), dogs[20].clone()]);
    copy_into(&root.join("some"), &[cats[21].clone(), dogs[21].clone()]);
    // Photos of other things (the ImageNet sample's tench, hammerhead, hen, …): none of the classes.
    let imagenet = shared.join("data/imagenet-sample");
    let imagenet_files = |names: &[&str]| -> Vec<PathBuf> {
        names
            .iter()
            .map(|name| imagenet.join(format!("{name}.JPEG")))
            .collect()
    };
    copy_into(
        &root.join("other-photos"),
        &imagenet_files(&["n01440764_tench", "n01494475_hammerhead", "n01514859_hen"]),
    );
    // The camera's empty scene (docs/camera.md's `porch-empty/`): fences, a manhole cover, a window screen.
    copy_into(
        &root.join("porch-empty"),
        &imagenet_files(&[
            "n03930313_picket_fence",
            "n04604644_worm_fence",
            "n03717622_manhole_cover",
            "n04589890_window_screen",
            "n02999410_chain",
            "n04548280_wall_clock",
        ]),
    );
    // What docs/cameras.md's `echo … > porch.password` writes.
    fs::write(root.join("porch.password"), "the camera password\n").expect("porch.password");
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

    let mut ran = HashSet::new();
    let (mut runs, mut fails, mut waits) = (0, 0, 0);
    for (page, command) in &commands {
        let (_, expect) = EXPECTED
            .iter()
            .find(|(line, _)| line == command)
            .expect("checked above");
        let shell_line = command.replacen("cargo run --release -p lookout-host --", "lookout", 1);
        if !ran.insert(shell_line.clone()) {
            eprintln!("already ran: {command} ({page})");
            continue;
        }
        let mut bash = Command::new("bash");
        bash.args(["-o", "pipefail", "-c", &shell_line])
            .current_dir(root)
            .env("PATH", &path)
            .env("LOOKOUT_CACHE", root.join("cache"));
        if let Expect::WaitsFor(needles) = expect {
            waits_for(bash, page, command, needles);
            waits += 1;
            eprintln!("ran: {command} ({page}; waits for its camera)");
            continue;
        }
        let out = bash.output().expect("running bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        let check_error = |needles: &[&str]| {
            assert!(
                !out.status.success(),
                "{page}: {command}: expected to fail here, but it ran:\n{stdout}"
            );
            assert_eq!(
                errors.len(),
                1,
                "{page}: {command}: one error line, got:\n{stderr}"
            );
            for needle in needles {
                assert!(
                    errors[0].contains(needle),
                    "{page}: {command}: {needle:?} missing from the error: {}",
                    errors[0]
                );
            }
        };
        match expect {
            Expect::Runs => assert!(
                out.status.success(),
                "{page}: {command} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                out.status
            ),
            Expect::FailsWith(needles) => check_error(needles),
            Expect::RunsOrFailsWith(needles) => {
                if !out.status.success() {
                    check_error(needles);
                }
            }
            Expect::WaitsFor(_) => unreachable!("handled above"),
        }
        if out.status.success() {
            runs += 1;
        } else {
            fails += 1;
        }
        eprintln!("ran: {command} ({page})");
    }
    eprintln!("{runs} commands ran, {fails} failed as expected, {waits} waited for a camera");

    // What the commands were for.
    for made in [
        "pets.lookout",
        "pets.onnx",
        "grid.png",
        "features/manifest.json",
        "run/curves.png",
        "porch.lookout",
        "pets-q4.lookout",
        "model.onnx",
    ] {
        assert!(root.join(made).is_file(), "{made} was not written");
    }
}

/// Runs a `watch` whose camera is missing: waits (at most 2 minutes: a debug build loads the bundle first) for
/// the one stderr line holding every needle, checks no `error:` line came first, then ends the process group
/// with SIGTERM, as Ctrl-C would, and checks it stops.
fn waits_for(mut bash: Command, page: &str, command: &str, needles: &[&str]) {
    let mut child = bash
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("running bash");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = needles.iter().all(|n| line.contains(n));
                seen.push(line);
                if hit {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let status = child.wait().expect("waiting for watch");
    drop(rx);
    let _ = reader.join();
    let shown = seen.join("\n");
    assert!(
        found,
        "{page}: {command}: no line holding {needles:?} within 2 minutes (exit {status}):\n{shown}"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("error:")),
        "{page}: {command}: an error before waiting for the camera:\n{shown}"
    );
}

/// Every relative link (`[text](target)`, images too) of README.md and the docs pages names a file that exists;
/// `#anchors` are not checked, addresses with a scheme are skipped.
#[test]
fn every_relative_link_points_to_a_file() {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (page, text) in pages() {
        let dir = root.join(&page).parent().expect("page dir").to_path_buf();
        let mut in_code = false;
        for (n, line) in text.lines().enumerate() {
            if line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                let after = &rest[at + 2..];
                let Some(end) = after.find(')') else { break };
                let target = after[..end].trim();
                rest = &after[end..];
                if target.is_empty()
                    || target.starts_with('#')
                    || target.contains("://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let file = target.split('#').next().unwrap_or(target);
                checked += 1;
                if !dir.join(file).exists() {
                    broken.push(format!("{page}:{}: {target}", n + 1));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: is the parser right?"
    );
    assert!(
        broken.is_empty(),
        "links to files that do not exist:\n{}",
        broken.join("\n")
    );
}

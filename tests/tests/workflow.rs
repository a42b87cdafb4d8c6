//! The whole user story over the real binaries: a folder of labelled photos → `lookout fit` → one bundle →
//! `lookout-edge` classifies held-out photos and watches a `dir:` "camera" of them.

use std::fs;
use std::path::{Path, PathBuf};

use lookout_e2e::{command, copy_into, json_lines, photos, require_shared, run_ok};

#[test]
fn fit_then_classify_and_watch_on_the_edge() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("PetImages");
    let cats = photos(&shared, "Cat");
    let dogs = photos(&shared, "Dog");
    // 40 photos per class to learn from, a corrupt file that must be skipped and reported, and 10 per class the
    // model never sees.
    copy_into(&data.join("Cat"), &cats[..40]);
    copy_into(&data.join("Dog"), &dogs[..40]);
    fs::copy(
        shared.join("data/corrupt-samples/truncated_half.jpg"),
        data.join("Cat/truncated_half.jpg"),
    )
    .expect("copy corrupt sample");
    let held_out: Vec<(PathBuf, &str)> = cats[100..110]
        .iter()
        .map(|p| (p.clone(), "Cat"))
        .chain(dogs[100..110].iter().map(|p| (p.clone(), "Dog")))
        .collect();

    let bundle = tmp.path().join("pets.lookout");
    let out = lookout_e2e::fit_pooled_lite0(&shared, &data, &bundle, 10, &[]);
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("fit --json prints one JSON object");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(bundle.is_file(), "fit wrote no bundle; stderr:\n{stderr}");
    let skipped = summary.to_string();
    assert!(
        skipped.contains("truncated_half.jpg"),
        "the corrupt photo must be reported as skipped: {summary}"
    );

    // The bundle as the Pi sees it.
    let info = run_ok(
        command("lookout-edge")
            .args(["info", "--json", "--model"])
            .arg(&bundle),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info --json");
    assert_eq!(
        info["header"]["labels"],
        serde_json::json!(["Cat", "Dog"]),
        "{info}"
    );

    let classified = run_ok(
        command("lookout-edge")
            .args(["classify", "--json", "--model"])
            .arg(&bundle)
            .args(held_out.iter().map(|(p, _)| p)),
    );
    let lines: Vec<serde_json::Value> = json_lines(&classified.stdout)
        .into_iter()
        .filter(|l| l.get("path").is_some())
        .collect();
    assert_eq!(lines.len(), held_out.len(), "one line per image");
    let right = lines
        .iter()
        .filter(|line| {
            let path = line["path"].as_str().expect("path");
            held_out
                .iter()
                .any(|(p, label)| Path::new(path) == p && line["label"] == *label)
        })
        .count();
    // Measured: 20/20 held-out photos right with 80 training photos (pooled Lite0 head); allow one miss.
    assert!(
        right >= 19,
        "only {right}/20 held-out photos right: {lines:?}"
    );

    // A dir: "camera" of the held-out cats: every frame must say Cat and an event must fire.
    let camera = tmp.path().join("camera");
    copy_into(&camera, &cats[100..110]);
    let watched = run_ok(
        command("lookout-edge")
            .args([
                "watch",
                "--json",
                "--no-drop",
                "--fps",
                "0",
                "--smooth",
                "3",
                "--threshold",
                "0.8",
            ])
            .arg("--model")
            .arg(&bundle)
            .arg("--source")
            .arg(format!("dir:{}", camera.display())),
    );
    let events = json_lines(&watched.stdout);
    let frames: Vec<_> = events.iter().filter(|e| e["type"] == "frame").collect();
    assert_eq!(frames.len(), 10, "{events:?}");
    let cat_frames = frames.iter().filter(|f| f["label"] == "Cat").count();
    assert!(
        cat_frames >= 9,
        "{cat_frames}/10 frames said Cat: {frames:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "event" && e["label"] == "Cat"),
        "no Cat event fired: {events:?}"
    );

    // The same bundle on the Pi's CPUs: the edge binary cross-built for aarch64 and armv7, under qemu-user.
    let probe: Vec<PathBuf> = held_out.iter().step_by(5).map(|(p, _)| p.clone()).collect();
    let x86 = classify_json(&mut command("lookout-edge"), &bundle, &probe);
    let mut emulated = 0;
    for target in lookout_e2e::cross::TARGETS {
        let Some(mut edge) = lookout_e2e::cross::edge_command(target) else {
            lookout_e2e::cross::skip_message(target.triple);
            continue;
        };
        let arm = classify_json(&mut edge, &bundle, &probe);
        assert_same_predictions(&x86, &arm, target.tolerance, target.name);
        emulated += 1;
    }
    let run_dir = PathBuf::from(
        summary["run_dir"]
            .as_str()
            .expect("fit --json names its run folder"),
    );
    if emulated > 0 {
        // The Pi 5 runs f16 natively: export the same run at f16 and run it with tract's FP16 kernels.
        let f16_bundle = tmp.path().join("pets-f16.lookout");
        // f16 is emulated on x86 (≈ 20× slower): measure the export on two test photos only.
        export(
            &run_dir,
            &f16_bundle,
            &["--precision", "f16", "--test-images", "2"],
        );
        if let Some(mut pi5) = lookout_e2e::cross::pi5_fp16_command() {
            let fp16 = classify_json(&mut pi5, &f16_bundle, &probe);
            assert_same_predictions(&x86, &fp16, lookout_e2e::cross::FP16_TOLERANCE, "Pi 5 f16");
        }
    }

    {
        // q4: every weight matrix in 4-bit blocks. On the Pi's CPUs through tract's NEON Q4_0 kernels
        // (--weights compact), and with the convolutions' weights expanded at load (fast, the default); against
        // the same bundle on x86_64, whose kernels are other code.
        let q4_bundle = tmp.path().join("pets-q4.lookout");
        export(&run_dir, &q4_bundle, &["--precision", "q4"]);
        let x86_q4 = classify_json_with(
            &mut command("lookout-edge"),
            &q4_bundle,
            &probe,
            &["--weights", "compact"],
        );
        let x86_q4_fast = classify_json(&mut command("lookout-edge"), &q4_bundle, &probe);
        assert_same_predictions(
            &x86_q4,
            &x86_q4_fast,
            Q4_WEIGHTS_TOLERANCE,
            "x86_64 q4 fast vs compact",
        );
        // Two photos each: 4-bit kernels run slowly under qemu. The Pi 4 both ways; 32-bit ARM (a Pi Zero 2 W's
        // usual OS, where compact matters) with compact, through tract's generic Q4_0 kernels.
        let q4_probe = &probe[..2];
        let x86_q4_probe = &x86_q4[..2];
        for (target, weights) in lookout_e2e::cross::TARGETS
            .iter()
            .flat_map(|t| ["compact", "fast"].map(|w| (t, w)))
            .filter(|(t, w)| t.triple.starts_with("aarch64") || *w == "compact")
        {
            let Some(mut edge) = lookout_e2e::cross::edge_command(target) else {
                continue;
            };
            let arm = classify_json_with(&mut edge, &q4_bundle, q4_probe, &["--weights", weights]);
            let what = format!("{} q4 --weights {weights}", target.name);
            assert_same_predictions(x86_q4_probe, &arm, Q4_TOLERANCE, &what);
        }
        // f16-q4 on the Pi 5: FP16 activations through tract's FP16 Q4_0 kernel, against q4 on x86_64.
        if let Some(mut pi5) = lookout_e2e::cross::pi5_fp16_command() {
            let f16q4_bundle = tmp.path().join("pets-f16-q4.lookout");
            export(
                &run_dir,
                &f16q4_bundle,
                &["--precision", "f16-q4", "--test-images", "2"],
            );
            let arm =
                classify_json_with(&mut pi5, &f16q4_bundle, q4_probe, &["--weights", "compact"]);
            assert_same_predictions(
                x86_q4_probe,
                &arm,
                lookout_e2e::cross::FP16_TOLERANCE,
                "Pi 5 f16-q4",
            );
        }
    }
}

/// Largest score difference of a q4 bundle on ARM against the same bundle on x86_64: the 4-bit weights are the
/// same, the kernels (and so the summation order) are not. Measured: aarch64 6.0e-8 (compact and fast), armv7
/// 1.2e-7.
const Q4_TOLERANCE: f64 = 1e-4;

/// Largest score difference between `--weights compact` and `fast` on one machine (measured 0 on x86).
const Q4_WEIGHTS_TOLERANCE: f64 = 1e-5;

/// `lookout export --run RUN --out BUNDLE --force FLAGS`.
fn export(run_dir: &Path, bundle: &Path, flags: &[&str]) {
    run_ok(
        command("lookout")
            .arg("export")
            .arg("--run")
            .arg(run_dir)
            .arg("--out")
            .arg(bundle)
            .arg("--force")
            .args(flags),
    );
}

/// Runs `classify --json` and returns (path, label, score) per image.
fn classify_json(
    edge: &mut std::process::Command,
    bundle: &Path,
    images: &[PathBuf],
) -> Vec<(String, String, f64)> {
    classify_json_with(edge, bundle, images, &[])
}

/// [`classify_json`] with more `classify` flags.
fn classify_json_with(
    edge: &mut std::process::Command,
    bundle: &Path,
    images: &[PathBuf],
    flags: &[&str],
) -> Vec<(String, String, f64)> {
    let out = run_ok(
        edge.args(["classify", "--json", "--model"])
            .arg(bundle)
            .args(flags)
            .args(images),
    );
    json_lines(&out.stdout)
        .into_iter()
        .filter(|l| l.get("path").is_some())
        .map(|l| {
            (
                l["path"].as_str().expect("path").to_string(),
                l["label"].as_str().expect("label").to_string(),
                l["score"].as_f64().expect("score"),
            )
        })
        .collect()
}

fn assert_same_predictions(
    reference: &[(String, String, f64)],
    other: &[(String, String, f64)],
    tolerance: f64,
    what: &str,
) {
    assert_eq!(
        reference.len(),
        other.len(),
        "{what}: different number of results"
    );
    let mut max_diff = 0f64;
    for (a, b) in reference.iter().zip(other) {
        assert_eq!(a.0, b.0, "{what}: results out of order");
        assert_eq!(
            a.1, b.1,
            "{what}: {} labelled {} on x86_64 but {} here",
            a.0, a.1, b.1
        );
        max_diff = max_diff.max((a.2 - b.2).abs());
    }
    eprintln!("{what}: labels identical, max score difference vs x86_64 {max_diff:.2e}");
    assert!(
        max_diff <= tolerance,
        "{what}: score differs by {max_diff} > {tolerance}"
    );
}

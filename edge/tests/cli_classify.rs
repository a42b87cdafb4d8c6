//! `lookout-edge classify`, `info` and `bench` through the built binary.

mod common;

use common::{s, stdout_json_lines as json_lines};

use std::path::PathBuf;
use std::process::{Command, Output};

use lookout_edge::{Model, RuntimeOptions};
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .output()
        .expect("running lookout-edge")
}

#[test]
fn classify_json_reports_results_errors_and_a_summary() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let mut images: Vec<PathBuf> = common::photos(&shared, "Cat", 3);
    images.extend(common::photos(&shared, "Dog", 3));
    let corrupt = shared.join("data/corrupt-samples");
    let mut args = vec!["classify", "--model", s(&bundles.sigmoid), "--json"];
    args.extend(images.iter().map(|p| s(p)));
    args.push(s(&corrupt));
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);

    // Every good image gives the label and score the library gives.
    let mut model = Model::load(&bundles.sigmoid, &RuntimeOptions::default()).expect("load");
    let results: Vec<&Value> = lines.iter().filter(|l| l["type"] == "result").collect();
    assert_eq!(results.len(), images.len(), "{lines:?}");
    for (line, path) in results.iter().zip(&images) {
        assert_eq!(line["path"], s(path));
        let p = model
            .classify(&lookout_shared::image_io::decode_file(path).expect("decode"))
            .expect("classify");
        assert_eq!(line["label"], model.labels()[p.label].as_str(), "{path:?}");
        assert!((line["score"].as_f64().expect("score") - f64::from(p.score)).abs() < 1e-5);
        assert!(line["ms"].as_f64().expect("ms") > 0.0);
    }
    let cats = results[..3].iter().filter(|l| l["label"] == "cat").count();
    let dogs = results[3..].iter().filter(|l| l["label"] == "dog").count();
    assert!(
        cats + dogs >= 5,
        "{cats} cats and {dogs} dogs right out of 6"
    );

    // The corrupt files are reported with their path and a reason.
    let errors: Vec<&Value> = lines.iter().filter(|l| l["type"] == "error").collect();
    let corrupt_files = std::fs::read_dir(&corrupt).expect("corrupt dir").count();
    assert_eq!(errors.len(), corrupt_files, "{errors:?}");
    for e in &errors {
        assert!(e["path"]
            .as_str()
            .expect("path")
            .contains("corrupt-samples"));
        assert!(!e["error"].as_str().expect("reason").is_empty());
    }

    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["images"], images.len() + corrupt_files);
    assert_eq!(summary["failed"], corrupt_files);
    assert!(summary["mean_ms"].as_f64().expect("mean") > 0.0);
}

#[test]
fn classify_text_walks_folders_and_exits_0_when_all_images_are_fine() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, path) in common::photos(&shared, "Cat", 2).iter().enumerate() {
        let sub = dir.path().join(format!("sub{i}"));
        std::fs::create_dir(&sub).expect("mkdir");
        // No extension: recognised by content.
        std::fs::copy(path, sub.join("photo")).expect("copy");
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image, skipped").expect("write");
    let out = run(&[
        "classify",
        "--model",
        s(&bundles.softmax),
        "--top",
        "3",
        s(dir.path()),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for line in stdout.lines() {
        assert!(line.contains("ms"), "{line}");
        assert!(line.contains("sub"), "{line}");
    }
    assert!(
        stderr.contains("2 images, 2 classified, 0 failed"),
        "{stderr}"
    );
}

#[test]
fn usage_and_model_errors_exit_2_with_one_clear_line() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let photo = common::photos(&shared, "Cat", 1).remove(0);

    let out = run(&["classify", "--model", "/nonexistent.lookout", s(&photo)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent.lookout"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let not_a_bundle = shared.join("models/imagenet_classes.txt");
    let out = run(&["classify", "--model", s(&not_a_bundle), s(&photo)]);
    assert_eq!(out.status.code(), Some(2));

    let out = run(&[
        "classify",
        "--model",
        s(&bundles.sigmoid),
        "/nonexistent/folder",
    ]);
    assert_eq!(out.status.code(), Some(2));

    let out = run(&["classify", "--model", s(&bundles.sigmoid)]);
    assert_eq!(out.status.code(), Some(2), "missing PATH is a usage error");
}

#[test]
fn info_shows_the_header() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let out = run(&["info", "--model", s(&bundles.softmax), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = &json_lines(&out)[0];
    assert_eq!(
        info["header"]["labels"].as_array().expect("labels").len(),
        1000
    );
    assert_eq!(info["header"]["backbone"]["name"], "efficientnet_lite0");
    let file_size = std::fs::metadata(&bundles.softmax).expect("size").len();
    assert_eq!(info["file_size"], file_size);

    let out = run(&["info", "--model", s(&bundles.sigmoid)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2: dog, cat"), "{text}");
    assert!(text.contains("Sigmoid (threshold 0.5)"), "{text}");
}

#[test]
fn bench_reports_latency_percentiles_and_memory() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let photo = common::photos(&shared, "Dog", 1).remove(0);
    let out = run(&[
        "bench",
        "--model",
        s(&bundles.sigmoid),
        "--iters",
        "5",
        "--image",
        s(&photo),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = &json_lines(&out)[0];
    for key in ["total_ms", "preprocess_ms", "inference_ms"] {
        let p50 = b[key]["p50"].as_f64().expect(key);
        let p99 = b[key]["p99"].as_f64().expect(key);
        assert!(p50 > 0.0 && p99 >= p50, "{key}: {b}");
    }
    assert!(b["load_ms"].as_f64().expect("load") > 0.0);
    assert!(b["frames_per_s"].as_f64().expect("fps") > 0.0);
    // The Lite0 model alone is ≈ 19 MB of weights.
    assert!(
        b["peak_memory_bytes"].as_u64().expect("memory") > 20_000_000,
        "{b}"
    );
}

#[test]
fn bench_profile_says_where_the_time_goes() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let out = run(&[
        "bench",
        "--model",
        s(&bundles.sigmoid),
        "--iters",
        "3",
        "--profile",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = &json_lines(&out)[0]["profile"];
    assert_eq!(p["runs"], 3, "{p}");
    // The kinds partition the plan: shares sum to 1, times to the plan's total.
    let kinds = p["by_kind"].as_array().expect("by_kind");
    let share: f64 = kinds
        .iter()
        .map(|k| k["share"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((share - 1.0).abs() < 0.01, "{p}");
    let ms: f64 = kinds.iter().map(|k| k["ms"].as_f64().unwrap_or(0.0)).sum();
    let plan = p["plan_ms"].as_f64().expect("plan_ms");
    assert!((ms - plan).abs() <= 0.01 * plan + 0.01, "{ms} vs {plan}");
    // EfficientNet-Lite0 is depthwise and pointwise convolutions: both are there, and they are most of it.
    let kind = |name: &str| {
        kinds
            .iter()
            .find(|k| k["kind"].as_str().is_some_and(|s| s.starts_with(name)))
            .and_then(|k| k["share"].as_f64())
            .unwrap_or(0.0)
    };
    assert!(kind("depthwise") > 0.1 && kind("convolution") > 0.1, "{p}");
    assert!(kind("depthwise") + kind("convolution") > 0.8, "{p}");
    let ops = p["by_op"].as_array().expect("by_op");
    assert!(
        ops.iter()
            .any(|o| o["op"].as_str().is_some_and(|n| n.contains("DepthWise"))),
        "{p}"
    );
}

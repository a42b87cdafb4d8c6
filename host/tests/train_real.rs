//! `lookout extract → train → evaluate → predict` on real photos with the real EfficientNet-Lite0 backbone.
//!
//! CI has two cores, so these tests use pooled features ([1280] per photo) of subsets: 300 cats-vs-dogs
//! photos, and a 3-class set built from the ImageNet sample. The full 2000-photo check with the tutorial's
//! [1280, 7, 7] head is `full_cats_vs_dogs_reaches_the_tutorials_accuracy` (`--ignored`, ≈ minutes).

use std::path::{Path, PathBuf};
use std::process::Command;

use lookout_testdata::require_shared;

const LITE0: &str = "models/efficientnet_lite0_features_dynbatch.onnx";

fn lookout(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .output()
        .expect("the lookout binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "lookout {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Links `files` into `root/<class>/` so `lookout extract` sees a class-per-folder data set.
fn link_dataset(root: &Path, classes: &[(&str, Vec<PathBuf>)]) {
    for (class, files) in classes {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for file in files {
            std::os::unix::fs::symlink(file, dir.join(file.file_name().unwrap())).unwrap();
        }
    }
}

fn first_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.truncate(n);
    files
}

fn extract(shared: &Path, data: &Path, out: &Path, pooled: bool) {
    let backbone = shared.join(LITE0);
    let mut args = vec![
        "extract",
        "--data",
        data.to_str().unwrap(),
        "--backbone",
        backbone.to_str().unwrap(),
        "--preprocess",
        "tf-inception",
        "--out",
        out.to_str().unwrap(),
    ];
    if pooled {
        args.extend(["--pool", "avg"]);
    }
    lookout(&args);
}

fn evaluate_json(run: &Path) -> serde_json::Value {
    let stdout = lookout(&["evaluate", "--run", run.to_str().unwrap(), "--json"]);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("evaluate --json printed {stdout:?}: {e}"))
}

#[test]
fn cats_vs_dogs_subset_pooled_features_train_evaluate_predict() {
    let shared = require_shared!();
    let cats = shared.join("data/cats-vs-dogs/Cat");
    let dogs = shared.join("data/cats-vs-dogs/Dog");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    link_dataset(
        &data,
        &[
            ("Cat", first_files(&cats, 150)),
            ("Dog", first_files(&dogs, 150)),
        ],
    );
    let features = tmp.path().join("features");
    extract(&shared, &data, &features, true);
    let run = tmp.path().join("run");
    lookout(&[
        "train",
        "--features",
        features.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "10",
    ]);
    for file in ["run.json", "head.safetensors", "history.json", "curves.png"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let metrics = evaluate_json(&run);
    let accuracy = metrics["accuracy"].as_f64().unwrap();
    eprintln!("measured test accuracy {accuracy}: {metrics}");
    // Measured: 0.983 (59 of 60 test photos) for this 300-photo subset.
    assert!(accuracy >= 0.95, "test accuracy {accuracy}: {metrics}");
    assert_eq!(metrics["confusion"].as_array().unwrap().len(), 2);
    assert_eq!(metrics["per_class"].as_array().unwrap().len(), 2);
    assert!(run.join("confusion.png").is_file());

    // Predict on photos outside the subset (names sort after the first 150).
    let cat = first_files(&cats, 400).pop().unwrap();
    let dog = first_files(&dogs, 400).pop().unwrap();
    let grid = tmp.path().join("grid.png");
    let stdout = lookout(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        cat.to_str().unwrap(),
        dog.to_str().unwrap(),
        "--json",
        "--grid",
        grid.to_str().unwrap(),
    ]);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let labels: Vec<&str> = value["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Cat", "Dog"], "{value}");
    assert!(grid.is_file());

    // A folder, as `lookout-edge classify` takes one: walked in sorted order, a bad file listed with its reason,
    // the exit status saying that one failed.
    let folder = tmp.path().join("to-label");
    link_dataset(
        &folder,
        &[("a", vec![cat.clone()]), ("b", vec![dog.clone()])],
    );
    std::fs::write(folder.join("b").join("empty.jpg"), b"").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["predict", "--run", run.to_str().unwrap(), "--json"])
        .arg(&folder)
        .output()
        .expect("the lookout binary runs");
    assert!(
        !output.status.success(),
        "a bad file in the folder fails the run"
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = value["predictions"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().filter_map(|p| p["label"].as_str()).collect();
    assert_eq!(labels, ["Cat", "Dog"], "{value}");
    let bad: Vec<&serde_json::Value> = rows.iter().filter(|p| !p["error"].is_null()).collect();
    assert_eq!(bad.len(), 1, "{value}");
    assert!(
        bad[0]["path"].as_str().unwrap().ends_with("empty.jpg"),
        "{value}"
    );

    // Same seed, same features → the same weights, byte for byte.
    let again = tmp.path().join("run-again");
    lookout(&[
        "train",
        "--features",
        features.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--epochs",
        "10",
    ]);
    assert_eq!(
        std::fs::read(run.join("head.safetensors")).unwrap(),
        std::fs::read(again.join("head.safetensors")).unwrap()
    );
}

/// Coarse ImageNet groups by class index (see labels.csv of the sample).
fn group_of(class_index: usize) -> Option<&'static str> {
    match class_index {
        151..=268 => Some("dog"),
        7..=24 | 80..=100 | 127..=146 => Some("bird"),
        // Man-made objects (artefacts: 400–899 are almost all things people make).
        400..=899 => Some("object"),
        _ => None,
    }
}

#[test]
fn three_imagenet_groups_train_far_above_chance() {
    let shared = require_shared!();
    let sample = shared.join("data/imagenet-sample");
    let labels = std::fs::read_to_string(sample.join("labels.csv")).unwrap();
    let mut groups: Vec<(&str, Vec<PathBuf>)> =
        vec![("bird", vec![]), ("dog", vec![]), ("object", vec![])];
    for line in labels.lines().skip(1) {
        let mut fields = line.split(',');
        let (Some(file), Some(index)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(group) = index.parse().ok().and_then(group_of) else {
            continue;
        };
        groups
            .iter_mut()
            .find(|(g, _)| *g == group)
            .unwrap()
            .1
            .push(sample.join(file));
    }
    // 16 birds and 30 dogs in the sample; 30 objects keep the classes roughly balanced.
    groups[2].1.truncate(30);
    assert!(
        groups.iter().all(|(_, files)| files.len() >= 15),
        "{:?}",
        groups.iter().map(|g| g.1.len()).collect::<Vec<_>>()
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    link_dataset(&data, &groups);
    let features = tmp.path().join("features");
    extract(&shared, &data, &features, true);
    let run = tmp.path().join("run");
    lookout(&[
        "train",
        "--features",
        features.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "30",
        "--batch",
        "16",
    ]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(config["output"], "softmax");
    assert_eq!(config["head"]["outputs"], 3);
    let metrics = evaluate_json(&run);
    let accuracy = metrics["accuracy"].as_f64().unwrap();
    eprintln!("measured test accuracy {accuracy}: {metrics}");
    // Chance is 1/3. Measured: 0.867 (13 of 15 test photos: 2 birds taken for objects); bound leaves 4 misses.
    assert!(accuracy >= 0.6, "test accuracy {accuracy}: {metrics}");
    assert_eq!(metrics["confusion"].as_array().unwrap().len(), 3);
}

/// The tutorial's check: full 2000 photos, [1280, 7, 7] Lite0 features, the default head, 5 epochs.
/// Set LOOKOUT_LITE0_FEATURES to an existing cache to skip the extraction (≈ 2–4 minutes).
#[test]
#[ignore = "full cats-vs-dogs extraction and training: minutes; run with --ignored"]
fn full_cats_vs_dogs_reaches_the_tutorials_accuracy() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let features = match std::env::var_os("LOOKOUT_LITE0_FEATURES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let features = tmp.path().join("features");
            extract(&shared, &shared.join("data/cats-vs-dogs"), &features, false);
            features
        }
    };
    let run = tmp.path().join("run");
    lookout(&[
        "train",
        "--features",
        features.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let metrics = evaluate_json(&run);
    let accuracy = metrics["accuracy"].as_f64().unwrap();
    eprintln!("measured test accuracy {accuracy}: {metrics}");
    // The tutorial reached 97.5–99.25% across its epochs.
    assert!(accuracy >= 0.975, "test accuracy {accuracy}: {metrics}");
}

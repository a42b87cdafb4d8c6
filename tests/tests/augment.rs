//! `--augment K` and `--conditions`, as a user runs them: augmented views extracted once and cached beside
//! the clean features (reused, extended, never mixed with another policy), the head trained on them, and the
//! bundle measured under camera conditions by `fit` and again, identically, by `evaluate`.

use std::path::Path;

use lookout_e2e::{command, copy_into, json_lines, photos, require_shared, run_ok};

fn lite0(shared: &Path) -> std::path::PathBuf {
    shared.join("models/efficientnet_lite0_features_dynbatch.onnx")
}

#[test]
fn augmented_views_are_cached_once_and_conditions_are_measured_through_the_bundle() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("PetImages");
    copy_into(&data.join("Cat"), &photos(&shared, "Cat")[..30]);
    copy_into(&data.join("Dog"), &photos(&shared, "Dog")[..30]);
    let bundle = tmp.path().join("pets.lookout");
    let fit = |extra: &[&str]| {
        let out = lookout_e2e::fit_pooled_lite0(&shared, &data, &bundle, 5, extra);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("fit JSON")
    };

    let report = fit(&["--augment", "2", "--conditions"]);
    assert_eq!(report["augment_views"], 2, "{report}");
    let train_images = report["train_images"].as_u64().expect("train_images");
    let work = tmp.path().join("pets.lookout-work");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.join("features/manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let views = &manifest["views"];
    assert_eq!(views["views"], 2);
    assert_eq!(
        views["policy"],
        "crop=0.6,flip,jitter=0.3,rotate=10,blur=1.5,noise=8,jpeg=30"
    );
    let shards = views["shards"].as_array().expect("view shards");
    assert_eq!(shards.len(), 2, "one training shard, two views: {views}");
    for shard in shards {
        assert_eq!(shard["count"].as_u64(), Some(train_images));
        assert!(work
            .join("features")
            .join(shard["file"].as_str().expect("file"))
            .is_file());
    }
    // The run records what it was trained on.
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("run/run.json")).expect("run.json"))
            .expect("run JSON");
    assert_eq!(
        run["features"]["augment"]["views"], 2,
        "{}",
        run["features"]
    );

    // Conditions: eight, each a fraction; the clean pass is the export's own measurement of the same photos.
    let conditions = &report["conditions"];
    let names: Vec<&str> = conditions["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "low_light",
            "motion_blur",
            "noise",
            "jpeg_20",
            "rotate_15",
            "off_centre",
            "low_res",
            "infrared"
        ]
    );
    assert_eq!(
        conditions["clean"]["label_accuracy"].as_f64(),
        report["export"]["accuracy"].as_f64(),
        "{conditions}"
    );
    for c in conditions["conditions"].as_array().expect("conditions") {
        let acc = c["accuracy"].as_f64().expect("accuracy");
        assert!(
            (0.0..=1.0).contains(&acc)
                && acc <= c["label_accuracy"].as_f64().expect("label accuracy")
        );
    }
    let png = std::fs::read(work.join("run/conditions.png")).expect("conditions.png");
    assert!(png.starts_with(b"\x89PNG"));

    // `evaluate --conditions` on the same bundle gives the same figures (fixed seeds, same frames).
    let out = run_ok(
        command("lookout")
            .args(["evaluate", "--run"])
            .arg(work.join("run"))
            .arg("--model")
            .arg(&bundle)
            .args(["--conditions", "--json"]),
    );
    let evaluated = &json_lines(&out.stdout)[0]["conditions"];
    assert_eq!(evaluated, conditions);

    // Asking for a third view computes only that one; the same again reuses everything.
    let extract = |extra: &[&str]| {
        let out = run_ok(
            command("lookout")
                .args(["extract", "--data"])
                .arg(&data)
                .arg("--out")
                .arg(work.join("features"))
                .arg("--backbone")
                .arg(lite0(&shared))
                .args(["--preprocess", "tf-inception", "--pool", "avg", "--json"])
                .args(extra),
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("extract JSON")
    };
    let third = extract(&["--augment", "3"]);
    assert_eq!(third["processed_images"], 0, "{third}");
    assert_eq!(
        third["processed_views"].as_u64(),
        Some(train_images),
        "{third}"
    );
    let again = extract(&["--augment", "3"]);
    assert_eq!(
        (again["reused"].as_bool(), again["processed_views"].as_u64()),
        (Some(true), Some(0))
    );

    // Another policy never mixes with these views: its own files, the old ones removed.
    let other = extract(&["--augment", "1", "--augment-policy", "flip,noise=20"]);
    assert_eq!(
        other["processed_views"].as_u64(),
        Some(train_images),
        "{other}"
    );
    let aug_files = std::fs::read_dir(work.join("features"))
        .expect("features dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("train-aug-"))
        .count();
    assert_eq!(aug_files, 1);

    // `train --no-augment` trains on the clean rows only, and its run says so.
    let plain_run = tmp.path().join("plain-run");
    run_ok(
        command("lookout")
            .args(["train", "--features"])
            .arg(work.join("features"))
            .arg("--out")
            .arg(&plain_run)
            .args(["--no-augment", "--epochs", "2", "--json"]),
    );
    let plain: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plain_run.join("run.json")).expect("run.json"))
            .expect("run JSON");
    assert!(
        plain["features"].get("augment").is_none(),
        "{}",
        plain["features"]
    );

    // A bad policy says what to write.
    let out = command("lookout")
        .args(["extract", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("x"))
        .arg("--backbone")
        .arg(lite0(&shared))
        .args([
            "--preprocess",
            "tf-inception",
            "--augment",
            "1",
            "--augment-policy",
            "sharpen=2",
        ])
        .output()
        .expect("extract");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an augmentation"));
}

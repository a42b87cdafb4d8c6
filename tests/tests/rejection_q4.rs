//! A 4-bit bundle's rejection compares a frame with a bank computed by its own 4-bit backbone.
//!
//! 4-bit weights move the backbone's features (on the fixed-camera scene, a training photo's 4-bit features
//! were 0.21 cosine distance from its float ones, the median of 60), so a bank of float features put every
//! frame far from it and the threshold, recalibrated on those scores, let in five times the photos of other
//! things. `export` therefore runs each bank row's image (a photo, or one of its views drawn again) through
//! the 4-bit backbone. Checked as a user fits: a photo of the bank is then its own nearest neighbour on the
//! edge, at a score near 0 (measured: median 0.0005, largest 0.0076 of 60 photos), not 0.2. And `evaluate --ood`
//! on such a run shows what its bank holds next to what `--unknown-clean` would have exported.

use std::fs;
use std::path::{Path, PathBuf};

use lookout_e2e::{command, copy_into, json_lines, photos, require_shared, run_ok};

/// The `sources` tensor of a run's `unknown.safetensors`: (training row, view) of each bank row.
fn bank_sources(file: &Path) -> Vec<(usize, u32)> {
    let bytes = fs::read(file).expect("unknown.safetensors");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len]).expect("safetensors header");
    let sources = &header["sources"];
    assert_eq!(sources["dtype"], "U32", "{header}");
    let offsets: Vec<usize> = sources["data_offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|v| v.as_u64().expect("offset") as usize)
        .collect();
    let data = &bytes[8 + header_len + offsets[0]..8 + header_len + offsets[1]];
    data.chunks_exact(8)
        .map(|b| {
            (
                u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize,
                u32::from_le_bytes(b[4..].try_into().expect("4 bytes")),
            )
        })
        .collect()
}

#[test]
fn a_q4_bundle_finds_its_bank_photos_at_their_own_place() {
    let shared = require_shared!();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("PetImages");
    copy_into(&data.join("Cat"), &photos(&shared, "Cat")[..40]);
    copy_into(&data.join("Dog"), &photos(&shared, "Dog")[..40]);
    let work = dir.path().join("work");
    let bundle = dir.path().join("pets.lookout");
    // As `fit_pooled_lite0`, in 4 bits, with camera views so that the bank holds views too.
    let fitted = run_ok(
        command("lookout")
            .args(["fit", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&bundle)
            .arg("--work")
            .arg(&work)
            .arg("--backbone")
            .arg(shared.join("models/efficientnet_lite0_features_dynbatch.onnx"))
            .args([
                "--preprocess",
                "tf-inception",
                "--pool",
                "avg",
                "--epochs",
                "3",
            ])
            .args([
                "--augment",
                "1",
                "--augment-policy",
                "camera",
                "--precision",
                "q4",
                "--json",
            ]),
    );
    let report: serde_json::Value = serde_json::from_slice(&fitted.stdout).expect("fit JSON");
    assert_eq!(report["export"]["precision"], "q4", "{}", report["export"]);
    assert!(
        report["unknown"]["bank_views"].as_u64().unwrap_or(0) > 0,
        "{}",
        report["unknown"]
    );
    // And the summary says what a 4-bit backbone costs a camera's rejection, and what to fit instead.
    assert!(
        report["warnings"]
            .as_array()
            .is_some_and(|warnings| warnings.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.contains("leave --precision at auto")))),
        "{}",
        report["warnings"]
    );

    // The bank's photos, found as the features cache lists the training split.
    let sources = bank_sources(&work.join("run/unknown.safetensors"));
    assert_eq!(
        sources.len() as u64,
        report["unknown"]["bank_size"].as_u64().unwrap_or(0)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(work.join("features/manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    let root = PathBuf::from(manifest["data_root"].as_str().expect("data_root"));
    let list = fs::read_to_string(work.join("features/splits/train.txt")).expect("train list");
    let entries: Vec<&str> = list
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(l))
        .collect();
    let bank_photos: Vec<PathBuf> = sources
        .iter()
        .filter(|(_, view)| *view == 0)
        .map(|&(row, _)| root.join(entries[row]))
        .take(20)
        .collect();
    assert!(bank_photos.len() >= 10, "{} bank photos", bank_photos.len());

    let out = run_ok(
        command("lookout-edge")
            .args(["classify", "--json", "--model"])
            .arg(&bundle)
            .args(&bank_photos),
    );
    let scores: Vec<f64> = json_lines(&out.stdout)
        .iter()
        .filter_map(|l| l["ood_score"].as_f64())
        .collect();
    assert_eq!(scores.len(), bank_photos.len());
    let largest = scores.iter().copied().fold(0.0, f64::max);
    assert!(
        largest < 0.05,
        "the 4-bit bundle's scores of its own bank photos reach {largest:.4} (a float bank gives about 0.2): {scores:?}"
    );

    // `evaluate --ood` on a run whose bank holds views (20 ImageNet photos: what is measured is the report).
    let mut imagenet: Vec<PathBuf> = fs::read_dir(shared.join("data/imagenet-sample"))
        .expect("imagenet-sample")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpeg"))
        })
        .collect();
    imagenet.sort();
    let others = dir.path().join("others");
    copy_into(&others, &imagenet[..20]);
    let evaluated = run_ok(
        command("lookout")
            .args(["evaluate", "--json", "--run"])
            .arg(work.join("run"))
            .arg("--ood")
            .arg(&others),
    );
    let ood: serde_json::Value =
        serde_json::from_slice(&evaluated.stdout).expect("evaluate --json");
    let ood = &ood["ood"];
    let exported = ood["exported"]["score"].as_str().unwrap_or_default();
    let views = report["unknown"]["bank_views"].as_u64().unwrap_or(0);
    assert!(exported.contains(&format!("+ {views} views")), "{exported}");
    assert!(
        ood["candidates"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["score"]
                .as_str()
                .is_some_and(|s| s.contains("as --unknown-clean")))),
        "{}",
        ood["candidates"]
    );

    // `--precision auto` on the same run keeps the backbone float, and says why q4 was not tried.
    let auto_bundle = dir.path().join("auto.lookout");
    let exported = run_ok(
        command("lookout")
            .args(["export", "--json", "--run"])
            .arg(work.join("run"))
            .arg("--out")
            .arg(&auto_bundle),
    );
    let auto: serde_json::Value = serde_json::from_slice(&exported.stdout).expect("export JSON");
    assert_eq!(auto["precision"], "f32-q4head", "{auto}");
    let skipped = auto["skipped"].as_array().cloned().unwrap_or_default();
    assert!(
        skipped.iter().any(|s| s["precision"] == "q4"
            && s["reason"]
                .as_str()
                .is_some_and(|r| r.contains("camera-like views"))),
        "{}",
        auto["skipped"]
    );
    assert!(
        auto["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["precision"] != "q4")),
        "{}",
        auto["attempts"]
    );
}

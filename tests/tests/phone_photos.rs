//! Photos the size a phone takes them: decoded smaller (DCT-scaled JPEG) where the recipe keeps no more detail,
//! and decoded the same way everywhere a file becomes a model input.
//!
//! If feature extraction (`lookout predict` runs a photo through it) and the edge decoded a large JPEG
//! differently, the model's inputs would move by up to 0.04 on the -1..1 scale (`shared/tests/decode_scaled.rs`)
//! and one file would get two scores: the rejection's score, a distance in feature space, shows it (measured
//! with the edge decoding as stored: 2.4e-7 on the host, 8.2e-4 on the edge). The photos are 60 real ones
//! enlarged to 2000 × 1500, fitted as a user would.

use std::fs;
use std::path::Path;

use image::imageops::FilterType;
use lookout_e2e::{command, fit_pooled_lite0, json_lines, photos, require_shared, run_ok};

/// The first `n` photos of `class`, enlarged to 2000 × 1500 (or 1500 × 2000 for portraits) as JPEG quality 90.
fn enlarged(shared: &Path, class: &str, n: usize, into: &Path) {
    fs::create_dir_all(into).expect("class folder");
    for path in photos(shared, class).iter().take(n) {
        let photo = lookout_shared::image_io::decode_file(path).expect("decodes");
        let (w, h) = if photo.width() >= photo.height() {
            (2000, 1500)
        } else {
            (1500, 2000)
        };
        let big = image::imageops::resize(&photo, w, h, FilterType::Triangle);
        let file =
            fs::File::create(into.join(path.file_name().expect("a file name"))).expect("creates");
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
            .encode_image(&big)
            .expect("encodes");
    }
}

#[test]
fn large_photos_give_the_same_model_input_on_host_and_edge() {
    let shared = require_shared!();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("PetImages");
    enlarged(&shared, "Cat", 30, &data.join("Cat"));
    enlarged(&shared, "Dog", 30, &data.join("Dog"));
    let bundle = dir.path().join("pets.lookout");
    let work = dir.path().join("work");
    let fitted = fit_pooled_lite0(
        &shared,
        &data,
        &bundle,
        3,
        &["--work", &work.to_string_lossy()],
    );
    let report: serde_json::Value = serde_json::from_slice(&fitted.stdout).expect("fit JSON");
    assert_eq!(
        report["skipped"],
        serde_json::json!([]),
        "{}",
        report["skipped"]
    );

    // `lookout predict` (host) and `lookout-edge classify` give one score for one file, with a region too.
    let photo = data.join("Cat").join(
        fs::read_dir(data.join("Cat"))
            .expect("cats")
            .next()
            .expect("a cat")
            .expect("entry")
            .file_name(),
    );
    for roi in [None, Some("0.25,0.25,0.5,0.5")] {
        let mut predict = command("lookout");
        predict
            .args(["predict", "--json", "--run"])
            .arg(work.join("run"))
            .arg(&photo);
        let mut classify = command("lookout-edge");
        classify
            .args(["classify", "--json", "--model"])
            .arg(&bundle)
            .arg(&photo);
        if let Some(roi) = roi {
            predict.args(["--roi", roi]);
            classify.args(["--roi", roi]);
        }
        // The rejection's score: a distance in feature space, which moves with any change of the input (the
        // class probabilities of a confident photo sit at 1.0).
        let host: serde_json::Value =
            serde_json::from_slice(&run_ok(&mut predict).stdout).expect("predict JSON");
        let host = host["predictions"][0]["ood_score"]
            .as_f64()
            .expect("predict's ood_score");
        let edge = json_lines(&run_ok(&mut classify).stdout)
            .iter()
            .find_map(|l| l["ood_score"].as_f64())
            .expect("classify's ood_score");
        assert!(
            (host - edge).abs() < 1e-4,
            "roi {roi:?}: predict {host}, classify {edge}"
        );
    }

    // `watch` decodes a frame for every region it classifies, as `classify` decodes the same file for one: with
    // the half-frame zone alone, at 1/2; with a quarter-frame zone beside it, as stored (the quarter needs it).
    let frames = dir.path().join("frames");
    fs::create_dir_all(&frames).expect("frames");
    fs::copy(&photo, frames.join("frame.jpg")).expect("copies");
    let classify_roi = |region: &str| {
        json_lines(
            &run_ok(
                command("lookout-edge")
                    .args(["classify", "--json", "--roi", region, "--model"])
                    .arg(&bundle)
                    .arg(frames.join("frame.jpg")),
            )
            .stdout,
        )
        .iter()
        .find_map(|l| l["ood_score"].as_f64())
        .expect("classify's ood_score")
    };
    let half = ("half", "0.25,0.25,0.5,0.5");
    let quarter = ("quarter", "0.5,0.5,0.25,0.25");
    for (zones, compared) in [(vec![half], half), (vec![half, quarter], quarter)] {
        let mut watch = command("lookout-edge");
        watch
            .args(["watch", "--json", "--no-drop", "--fps", "0", "--model"])
            .arg(&bundle)
            .arg("--source")
            .arg(format!("dir:{}", frames.display()));
        for (name, region) in &zones {
            watch.args(["--zone", &format!("{name}={region}")]);
        }
        let watched = json_lines(&run_ok(&mut watch).stdout)
            .iter()
            .find(|l| l["type"] == "frame" && l["zone"] == compared.0)
            .and_then(|l| l["ood_score"].as_f64())
            .expect("the zone's frame line");
        let classified = classify_roi(compared.1);
        assert!(
            (watched - classified).abs() < 1e-4,
            "zones {zones:?}, zone {}: watch {watched}, classify {classified}",
            compared.0
        );
    }
}

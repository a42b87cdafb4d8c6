//! "Nothing I know": a bundle fitted as a user fits it calls photos of other things unknown on the edge, and
//! `watch` fires no event on a stream of them, where the same bundle with rejection turned off does.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lookout_e2e::{command, copy_into, json_lines, photos, require_shared, run_ok};

/// The photos of `../shared/data/imagenet-sample` that are neither dogs nor cats (ImageNet classes 151–285).
fn other_things(shared: &Path) -> Vec<PathBuf> {
    let dir = shared.join("data/imagenet-sample");
    let labels = fs::read_to_string(dir.join("labels.csv")).expect("labels.csv");
    labels
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let file = fields.next()?;
            let class: u32 = fields.next()?.parse().ok()?;
            (!(151..=285).contains(&class)).then(|| dir.join(file))
        })
        .collect()
}

/// Frames a camera sends when nothing is there: black, grey, white, sensor noise, gradients, a flat wall.
fn synthetic_frames(dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).expect("synthetic dir");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 56) as u8
    };
    let (w, h) = (320u32, 240u32);
    let mut frames: Vec<(&str, image::RgbImage)> = vec![
        ("black", image::RgbImage::new(w, h)),
        (
            "grey",
            image::RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128])),
        ),
        (
            "white",
            image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255])),
        ),
        (
            "wall",
            image::RgbImage::from_pixel(w, h, image::Rgb([196, 180, 150])),
        ),
        (
            "night",
            image::RgbImage::from_pixel(w, h, image::Rgb([12, 14, 30])),
        ),
    ];
    for name in ["noise-1", "noise-2", "noise-3"] {
        frames.push((
            name,
            image::RgbImage::from_fn(w, h, |_, _| image::Rgb([noise(), noise(), noise()])),
        ));
    }
    frames.push((
        "dark-noise",
        image::RgbImage::from_fn(w, h, |_, _| {
            let v = noise() / 8;
            image::Rgb([v, v, v])
        }),
    ));
    frames.push((
        "gradient",
        image::RgbImage::from_fn(w, h, |x, _| {
            let v = (x * 255 / w) as u8;
            image::Rgb([v, v, v])
        }),
    ));
    frames.push((
        "sky",
        image::RgbImage::from_fn(w, h, |_, y| image::Rgb([90, 140, (160 + y * 90 / h) as u8])),
    ));
    frames.push((
        "checker",
        image::RgbImage::from_fn(w, h, |x, y| {
            let v = if (x / 20 + y / 20) % 2 == 0 { 230 } else { 25 };
            image::Rgb([v, v, v])
        }),
    ));
    frames
        .into_iter()
        .map(|(name, frame)| {
            let path = dir.join(format!("{name}.png"));
            frame.save(&path).expect("write frame");
            path
        })
        .collect()
}

/// `classify --json` lines of the results (not the summary), with `extra` flags.
fn classify(bundle: &Path, images: &[PathBuf], extra: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(
        command("lookout-edge")
            .args(["classify", "--json", "--model"])
            .arg(bundle)
            .args(extra)
            .args(images),
    );
    json_lines(&out.stdout)
        .into_iter()
        .filter(|line| line["type"] == "result")
        .collect()
}

fn fraction(lines: &[serde_json::Value], unknown: bool) -> f64 {
    lines.iter().filter(|l| l["unknown"] == unknown).count() as f64 / lines.len().max(1) as f64
}

/// `watch` over a `dir:` "camera": its JSON lines.
fn watch(bundle: &Path, camera: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(
        command("lookout-edge")
            .args([
                "watch",
                "--json",
                "--no-drop",
                "--fps",
                "0",
                "--smooth",
                "3",
            ])
            .args(["--threshold", "0.8", "--model"])
            .arg(bundle)
            .arg("--source")
            .arg(format!("dir:{}", camera.display()))
            .args(extra),
    );
    json_lines(&out.stdout)
}

/// One bundle fitted as a user fits it (400 training photos, a pooled Lite0 head, the default rejection),
/// shared by the tests of this file: fitting it is most of their time.
struct Fitted {
    dir: PathBuf,
    bundle: PathBuf,
    cats: Vec<PathBuf>,
    dogs: Vec<PathBuf>,
    others: Vec<PathBuf>,
}

fn fitted(shared: &Path) -> &'static Fitted {
    static FITTED: OnceLock<Fitted> = OnceLock::new();
    FITTED.get_or_init(|| {
        // Kept for the whole test process (both tests of this file use it).
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let data = dir.join("PetImages");
        let cats = photos(shared, "Cat");
        let dogs = photos(shared, "Dog");
        copy_into(&data.join("Cat"), &cats[..250]);
        copy_into(&data.join("Dog"), &dogs[..250]);
        let bundle = dir.join("pets.lookout");
        lookout_e2e::fit_pooled_lite0(shared, &data, &bundle, 10, &[]);
        Fitted {
            dir,
            bundle,
            cats,
            dogs,
            others: other_things(shared),
        }
    })
}

#[test]
fn photos_of_other_things_are_unknown_and_fire_no_event() {
    let shared = require_shared!();
    let fitted = fitted(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    let (bundle, cats, dogs) = (&fitted.bundle, &fitted.cats, &fitted.dogs);
    let info = run_ok(
        command("lookout-edge")
            .args(["info", "--json", "--model"])
            .arg(bundle),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info --json");
    assert_eq!(info["header"]["unknown"]["method"], "knn-cosine", "{info}");

    // Photos of the classes the model never saw, photos of other things, and empty frames.
    let held_out: Vec<PathBuf> = cats[300..350]
        .iter()
        .chain(&dogs[300..350])
        .cloned()
        .collect();
    let others = fitted.others.clone();
    assert_eq!(
        others.len(),
        216,
        "the ImageNet sample's photos that are no pets"
    );
    let synthetic = synthetic_frames(&tmp.path().join("synthetic"));

    let kept = fraction(&classify(bundle, &held_out, &[]), false);
    let other_lines = classify(bundle, &others, &[]);
    let accepted = fraction(&other_lines, false);
    let synthetic_accepted = fraction(&classify(bundle, &synthetic, &[]), false);
    eprintln!(
        "held-out photos kept {kept:.3}, other photos accepted {accepted:.3}, empty frames accepted \
         {synthetic_accepted:.3}"
    );
    // Measured (400 training photos, pooled Lite0 head, the defaults: keep 0.97, a 256-photo bank): 0.99 of the
    // held-out photos kept, 0.014 of the other photos (3 of 216) and none of the 13 empty frames accepted.
    assert!(
        kept >= 0.9,
        "only {kept:.3} of the photos of cats and dogs kept"
    );
    assert!(
        accepted <= 0.03,
        "{accepted:.3} of the photos of other things accepted"
    );
    assert!(
        synthetic_accepted == 0.0,
        "{synthetic_accepted:.3} of the empty frames accepted"
    );
    // Without rejection every one of them is a cat or a dog, most with near-certainty: the problem.
    let off = classify(bundle, &others, &["--no-unknown"]);
    assert_eq!(fraction(&off, false), 1.0);
    let confident = off
        .iter()
        .filter(|l| l["score"].as_f64().unwrap_or(0.0) >= 0.9)
        .count();
    assert!(
        confident * 2 > off.len(),
        "{confident} of {} at ≥ 0.9",
        off.len()
    );

    // The same measured on the host, with every candidate score.
    let run_dir = fitted.dir.join("pets.lookout-work/run");
    let other_dir = tmp.path().join("other");
    fs::create_dir_all(&other_dir).expect("other dir");
    for photo in &others {
        let name = photo.file_name().expect("file name");
        fs::copy(photo, other_dir.join(name)).expect("copy photo");
    }
    let evaluated = run_ok(
        command("lookout")
            .args(["evaluate", "--json", "--run"])
            .arg(&run_dir)
            .arg("--ood")
            .arg(&other_dir),
    );
    let report: serde_json::Value =
        serde_json::from_slice(&evaluated.stdout).expect("evaluate --json");
    let exported = &report["ood"]["exported"];
    let auroc = exported["auroc"].as_f64().expect("auroc");
    let host_accepted = exported["ood_accepted"].as_f64().expect("ood_accepted");
    eprintln!("evaluate --ood: exported {exported}");
    assert!(auroc >= 0.98, "AUROC {auroc}");
    assert!(
        (host_accepted - accepted).abs() < 0.02,
        "host {host_accepted} and edge {accepted} disagree on the same photos"
    );
    assert!(run_dir.join("ood.png").is_file(), "no histogram drawn");
    // The test split's own rejection rate, in the metrics: the photos of the classes it calls unknown.
    let test_rejected = report["unknown_rate"].as_f64().expect("unknown_rate");
    assert!(
        (test_rejected - (1.0 - exported["test_kept"].as_f64().unwrap_or(0.0))).abs() < 1e-6,
        "{report}"
    );
    let candidates = report["ood"]["candidates"].as_array().expect("candidates");
    let probability = candidates
        .iter()
        .find(|c| c["score"] == "max-probability")
        .expect("the head's own confidence is measured");
    assert!(
        probability["ood_accepted"].as_f64().unwrap_or(0.0) > accepted + 0.1,
        "the head's confidence should reject far less than the exported score: {probability}"
    );

    // A camera pointed at other things: events without rejection, none with it.
    let camera = tmp.path().join("camera");
    let confident_paths: Vec<PathBuf> = off
        .iter()
        .filter(|l| l["score"].as_f64().unwrap_or(0.0) >= 0.95 && l["label"] == off[0]["label"])
        .filter_map(|l| l["path"].as_str().map(PathBuf::from))
        .take(12)
        .collect();
    assert!(confident_paths.len() >= 6, "{confident_paths:?}");
    copy_into(&camera, &confident_paths);
    let events =
        |lines: &[serde_json::Value]| lines.iter().filter(|l| l["type"] == "event").count();
    let without = watch(bundle, &camera, &["--no-unknown"]);
    assert!(
        events(&without) >= 1,
        "no event without rejection: {without:?}"
    );
    let with = watch(bundle, &camera, &["--on-unknown"]);
    assert_eq!(events(&with), 0, "{with:?}");
    assert!(
        with.iter().any(|l| l["type"] == "unknown"),
        "--on-unknown tells when the scene is none of the labels: {with:?}"
    );
    let summary = with
        .iter()
        .find(|l| l["type"] == "summary")
        .expect("summary");
    assert_eq!(summary["unknown"], summary["frames"], "{summary}");
}

#[test]
fn frames_worth_labelling_are_saved_as_received() {
    let shared = require_shared!();
    let fitted = fitted(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    // A camera that sees four cats, then five things that are none of the classes.
    let camera = tmp.path().join("camera");
    let others = &fitted.others[..5];
    copy_into(&camera, &fitted.cats[400..404]);
    copy_into(&camera, others);
    let capture = tmp.path().join("to-label");
    let watch_saving = |rule: &[&str]| {
        let dir = capture.display().to_string();
        let mut args = vec!["--capture", dir.as_str(), "--capture-interval", "0"];
        args.extend_from_slice(rule);
        let lines = watch(&fitted.bundle, &camera, &args);
        lines
            .into_iter()
            .find(|l| l["type"] == "capture")
            .expect("a capture summary line")
    };

    let summary = watch_saving(&["--capture-when", "unknown"]);
    let saved: Vec<PathBuf> = fs::read_dir(capture.join("unknown"))
        .expect("DIR/unknown")
        .map(|e| e.expect("entry").path())
        .collect();
    let with_extension = |ext: &str| -> Vec<&PathBuf> {
        saved
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    };
    let (images, sidecars) = (with_extension("jpg"), with_extension("json"));
    // Measured: the five other things are unknown, the four cats are not.
    assert_eq!(images.len(), 5, "{saved:?} {summary}");
    assert_eq!(sidecars.len(), 5, "one sidecar per frame: {saved:?}");
    assert_eq!(summary["saved"], 5, "{summary}");
    assert!(!capture.join("Cat").exists(), "a cat was saved as unknown");
    // As received: byte for byte one of the camera's files, not re-encoded.
    let originals: Vec<Vec<u8>> = others
        .iter()
        .map(|p| fs::read(p).expect("original"))
        .collect();
    for image in &images {
        let bytes = fs::read(image).expect("saved frame");
        assert!(
            originals.contains(&bytes),
            "{} is not a frame as received",
            image.display()
        );
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&fs::read(sidecars[0]).expect("sidecar")).expect("sidecar JSON");
    assert_eq!(sidecar["unknown"], true, "{sidecar}");
    assert_eq!(sidecar["rule"], "unknown");
    assert_eq!(
        sidecar["model_sha256"].as_str().map(str::len),
        Some(64),
        "{sidecar}"
    );
    assert!(sidecar["ood_score"].as_f64().is_some(), "{sidecar}");

    // every:3 of nine frames: three, each in the folder of its predicted label.
    let summary = watch_saving(&["--capture-when", "every:3"]);
    assert_eq!(summary["saved"], 3, "{summary}");

    // A budget smaller than what is there: the oldest frames go first and the folder stays within it.
    let summary = watch_saving(&["--capture-when", "every:1", "--capture-max-mb", "0.2"]);
    assert!(summary["removed"].as_u64().unwrap_or(0) > 0, "{summary}");
    let total = folder_size(&capture);
    assert!(total <= 200_000, "{total} bytes kept for a 0.2 MB budget");
}

fn folder_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                folder_size(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

//! Zones, `--roi` and the empty scene (a bundle's background label) through the built binary: `watch`,
//! `classify`, `info`.

mod common;

use common::{json_lines, of_type, s};

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .output()
        .expect("running lookout-edge")
}

/// Waits (up to 10 s) for a detached `--exec` to have written `lines` lines.
fn read_log(path: &Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().count() >= lines || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const WATCH: [&str; 9] = [
    "watch",
    "--fps",
    "0",
    "--no-drop",
    "--smooth",
    "3",
    "--threshold",
    "0.8",
    "--exec-interval",
];

#[test]
fn zones_are_classified_apart_and_every_output_names_them() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let dir = common::cats_beside_dogs(&shared, 4);
    let frames = tempfile::tempdir().expect("temp dir");
    let exec_log = frames.path().join("exec.log");
    let capture = frames.path().join("capture");
    let exec = format!(
        "echo \"$LOOKOUT_LABEL $LOOKOUT_ZONE $LOOKOUT_FRAME\" >> {}",
        exec_log.display()
    );
    let source = format!("dir:{}", dir.path().display());
    let mut args = WATCH.to_vec();
    args.extend([
        "0",
        "--model",
        s(&bundles.sigmoid),
        "--source",
        &source,
        "--json",
        "--zone",
        "left=0,0,0.5,1",
        "--zone",
        "right=0.5,0,0.5,1",
        "--when",
        "dog@right",
        "--exec",
        &exec,
        "--capture",
        s(&capture),
        "--capture-when",
        "every:4",
        "--capture-interval",
        "0",
    ]);
    let lines = json_lines(&run(&args));

    let frames: Vec<(u64, &str, &str)> = of_type(&lines, "frame")
        .iter()
        .map(|f| {
            (
                f["frame"].as_u64().expect("frame"),
                f["zone"].as_str().expect("zone"),
                f["label"].as_str().expect("label"),
            )
        })
        .collect();
    let want: Vec<(u64, &str, &str)> = (1..=4)
        .flat_map(|n| [(n, "left", "cat"), (n, "right", "dog")])
        .collect();
    assert_eq!(frames, want);
    let events: Vec<(&str, &str, u64)> = of_type(&lines, "event")
        .iter()
        .map(|e| {
            (
                e["zone"].as_str().expect("zone"),
                e["label"].as_str().expect("label"),
                e["frame"].as_u64().expect("frame"),
            )
        })
        .collect();
    assert_eq!(events, [("left", "cat", 3), ("right", "dog", 3)]);

    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["frames"], 4, "{summary}");
    assert_eq!(summary["events"], 2, "{summary}");
    assert_eq!(summary["zones"][0]["zone"], "left", "{summary}");
    assert_eq!(summary["zones"][1]["classified"], 4, "{summary}");
    assert_eq!(summary["zones"][1]["events"], 1, "{summary}");

    // --when dog@right: the command ran for the right zone's dog only, with the zone in its environment.
    assert_eq!(read_log(&exec_log, 1), "dog right 3\n");

    // Frame 4 of each zone was saved as its 320×320 crop, with the zone and the region in the sidecar.
    let capture_line = of_type(&lines, "capture")[0];
    assert_eq!(capture_line["saved"], 2, "{capture_line}");
    for (label, zone, region) in [
        ("cat", "left", "0,0,0.5,1"),
        ("dog", "right", "0.5,0,0.5,1"),
    ] {
        let files: Vec<std::path::PathBuf> = std::fs::read_dir(capture.join(label))
            .expect("label folder")
            .map(|e| e.expect("entry").path())
            .collect();
        let image = files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "jpg"))
            .expect("a saved crop");
        assert!(
            s(image).ends_with(&format!("-000004-{zone}.jpg")),
            "{image:?}"
        );
        let saved = image::open(image).expect("saved crop decodes");
        assert_eq!((saved.width(), saved.height()), (320, 320));
        let sidecar: Value =
            serde_json::from_slice(&std::fs::read(image.with_extension("json")).expect("sidecar"))
                .expect("sidecar JSON");
        assert_eq!(sidecar["zone"], zone);
        assert_eq!(sidecar["region"], region);
        assert_eq!(sidecar["background"], false);
    }
}

#[test]
fn zone_lines_in_text_carry_the_zone() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let dir = common::cats_beside_dogs(&shared, 3);
    let source = format!("dir:{}", dir.path().display());
    let mut args = WATCH.to_vec();
    args.extend([
        "0",
        "--model",
        s(&bundles.sigmoid),
        "--source",
        &source,
        "--zone",
        "bowl=0,0,0.5,1",
        "--zone",
        "door=0.5,0,0.5,1",
    ]);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[bowl] frame      1  cat ")),
        "{stdout}"
    );
    assert!(stdout.contains("[door] EVENT dog"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[bowl] 3 classified"), "{stderr}");
}

#[test]
fn bad_zones_rois_and_rules_are_one_line_each() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let background = common::background_bundle(&shared);
    let model = s(&bundles.sigmoid);
    for (args, want) in [
        (
            vec!["--zone", "my bowl=0,0,1,1"],
            "use only letters, digits",
        ),
        (vec!["--zone", "bowl"], "expected NAME=x,y,w,h"),
        (
            vec!["--zone", "bowl=0.5,0,0.6,1"],
            "--zone bowl: region 0.5,0,0.6,1 is not inside",
        ),
        (
            vec!["--zone", "a=0,0,1,1", "--zone", "a=0,0,0.5,1"],
            "--zone a is given twice",
        ),
        (
            vec!["--roi", "0,0,1"],
            "--roi 0,0,1: a region is four numbers",
        ),
        (
            vec!["--when", "cat@porch", "--exec", "true"],
            "there is no zone \"porch\"",
        ),
        (
            vec!["--when", "horse@porch", "--exec", "true"],
            "\"horse\" is not a label",
        ),
    ] {
        let mut all = vec!["watch", "--model", model, "--source", "mjpeg:-"];
        all.extend(&args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    // The empty scene never fires: a rule on it is refused, and not offered as a label.
    let out = run(&[
        "watch",
        "--model",
        s(background),
        "--source",
        "mjpeg:-",
        "--when",
        "background",
        "--exec",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("background label (the empty scene)"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let out = run(&[
        "watch",
        "--model",
        s(background),
        "--source",
        "mjpeg:-",
        "--when",
        "cat",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("its labels are: dog\n"), "{stderr}");
    // --roi and --zone together: clap refuses it.
    let out = run(&[
        "watch",
        "--model",
        model,
        "--source",
        "mjpeg:-",
        "--roi",
        "0,0,1,1",
        "--zone",
        "a=0,0,1,1",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_empty_scene_prints_nothing_counts_and_never_acts() {
    let shared = lookout_testdata::require_shared!();
    let background = common::background_bundle(&shared);
    // Cats are this bundle's empty scene: six of them would fire "cat" with the plain cat/dog bundle.
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, photo) in common::photos(&shared, "Cat", 6).iter().enumerate() {
        std::fs::copy(photo, dir.path().join(format!("{i:02}.jpg"))).expect("copy photo");
    }
    let work = tempfile::tempdir().expect("temp dir");
    let exec_log = work.path().join("exec.log");
    let capture = work.path().join("capture");
    let exec = format!("echo \"$LOOKOUT_LABEL\" >> {}", exec_log.display());
    let source = format!("dir:{}", dir.path().display());
    let mut args = WATCH.to_vec();
    args.extend([
        "0",
        "--model",
        s(background),
        "--source",
        &source,
        "--json",
        "--exec",
        &exec,
        "--capture",
        s(&capture),
        "--capture-when",
        "every:6",
        "--capture-interval",
        "0",
    ]);
    let lines = json_lines(&run(&args));
    let frames = of_type(&lines, "frame");
    assert_eq!(frames.len(), 6);
    assert!(
        frames.iter().all(|f| f["background"] == true
            && f["unknown"] == false
            && f["label"] == "background"),
        "{frames:?}"
    );
    assert!(of_type(&lines, "event").is_empty(), "{lines:?}");
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(
        (summary["background"].as_u64(), summary["events"].as_u64()),
        (Some(6), Some(0))
    );
    // The saved frame is in the background label's folder, marked as the empty scene.
    let sidecars: Vec<Value> = std::fs::read_dir(capture.join("background"))
        .expect("background folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("sidecar")).expect("JSON"))
        .collect();
    assert_eq!(sidecars.len(), 1);
    assert_eq!(sidecars[0]["background"], true);
    // Nothing ran: give a detached command time it would have had.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !exec_log.exists(),
        "{:?}",
        std::fs::read_to_string(&exec_log)
    );

    // Text: "nothing" where the label would be, and counted in the summary.
    let mut args = WATCH.to_vec();
    args.extend(["0", "--model", s(background), "--source", &source]);
    let out = run(&args);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains("  nothing ")).count(),
        6,
        "{stdout}"
    );
    assert!(!stdout.contains("background"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 nothing"));
}

#[test]
fn classify_roi_and_the_empty_scene() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let dir = tempfile::tempdir().expect("temp dir");
    let both = dir.path().join("both.png");
    common::cat_beside_dog(&shared).save(&both).expect("write");
    let result = |roi: Option<&str>| {
        let mut args = vec![
            "classify",
            "--json",
            "--model",
            s(&bundles.sigmoid),
            s(&both),
        ];
        if let Some(roi) = roi {
            args.extend(["--roi", roi]);
        }
        let line = json_lines(&run(&args))[0].clone();
        (
            line["label"].as_str().expect("label").to_string(),
            line["score"].as_f64().expect("score"),
        )
    };
    let (left, right) = (result(Some("0,0,0.5,1")), result(Some("0.5,0,0.5,1")));
    assert_eq!((left.0.as_str(), right.0.as_str()), ("cat", "dog"));
    // The whole frame, as a region, is exactly the frame without one; a half is not.
    let whole = result(None);
    assert_eq!(result(Some("0,0,1,1")), whole);
    assert!(
        (whole.1 - left.1).abs() > 1e-3 && (whole.1 - right.1).abs() > 1e-3,
        "{whole:?} {left:?} {right:?}"
    );
    let out = run(&[
        "classify",
        "--model",
        s(&bundles.sigmoid),
        s(&both),
        "--roi",
        "2,0,1,1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );

    // A cat is the background bundle's empty scene: "nothing", counted.
    let background = common::background_bundle(&shared);
    let cat = &common::photos(&shared, "Cat", 1)[0];
    let dog = &common::photos(&shared, "Dog", 1)[0];
    let lines = json_lines(&run(&[
        "classify",
        "--json",
        "--model",
        s(background),
        s(cat),
        s(dog),
    ]));
    assert_eq!(
        (
            lines[0]["background"].as_bool(),
            lines[1]["background"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(lines[2]["background"], 1, "{}", lines[2]);
    let out = run(&["classify", "--model", s(background), s(cat), s(dog)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    assert_eq!(answers, ["nothing", "dog"], "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 nothing"));

    let out = run(&["info", "--model", s(background)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("background  background (the empty scene"),
        "{stdout}"
    );
    let out = run(&["info", "--model", s(&bundles.sigmoid)]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("empty scene"));
}

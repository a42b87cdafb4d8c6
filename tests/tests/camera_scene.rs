//! Day one with a fixed camera, as a user types it (`lookout_e2e::scene`: a real scene photo at night, real cats
//! and other animals at the bowl): a bundle fitted on photos watches the camera with a zone and captures what it
//! classified; the user sorts the crops into the cats and the empty scene; `lookout fit --background` learns
//! the scene; `watch --zone` then fires for the cats' later visits in the zone and answers "nothing" for the
//! empty porch. (Other animals at the bowl are printed, not asserted: most are still called Cat, docs/camera.md.)

use std::fs;
use std::path::{Path, PathBuf};

use lookout_e2e::scene::{scene, visitor_photos, write_frames, NightMode, SceneFrame, BOWL};
use lookout_e2e::{
    command, copy_into, fit_pooled_lite0, json_lines, photos, require_shared, run_ok,
};

/// The later evening, in the order the camera saw it: empty, a cat's visit, empty, other animals, empty, a
/// second visit, empty. Files named so that a folder source plays them in that order.
fn later_evening(shared: &Path, dir: &Path, cats: &[PathBuf]) -> Vec<SceneFrame> {
    let porch = scene(shared);
    let staging = dir.with_extension("staging");
    let visitors = visitor_photos(shared);
    let parts: [(&[PathBuf], &'static str, usize); 7] = [
        (&[], "empty", 8),
        (&cats[..3], "cat", 6),
        (&[], "empty", 8),
        (&visitors, "visitor", 6),
        (&[], "empty", 8),
        (&cats[3..], "cat", 6),
        (&[], "empty", 6),
    ];
    fs::create_dir_all(dir).expect("later folder");
    let mut frames = Vec::new();
    for (part, (visiting, truth, count)) in parts.into_iter().enumerate() {
        let written = write_frames(
            &staging,
            NightMode::Colour,
            &format!("p{part}"),
            &porch,
            visiting,
            truth,
            count,
            500 + 37 * part as u64,
        );
        for frame in written {
            let path = dir.join(format!("{:03}-{truth}.jpg", frames.len()));
            fs::rename(&frame.path, &path).expect("moving a frame");
            frames.push(SceneFrame { path, truth });
        }
    }
    frames
}

/// The captured crops sorted as a user would, looking at each: the cats into `cats`, the empty porch into
/// `background`. The sidecar names the frame each crop came from, and the frame's name says what was there.
fn sort_by_hand(captured: &Path, cats: &Path, background: &Path) -> (usize, usize) {
    fs::create_dir_all(cats).expect("Cat folder");
    fs::create_dir_all(background).expect("background folder");
    let (mut n_cats, mut n_empty) = (0, 0);
    for folder in fs::read_dir(captured).expect("captured folder") {
        let folder = folder.expect("entry").path();
        if !folder.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&folder).expect("label folder") {
            let sidecar = entry.expect("entry").path();
            if sidecar.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let meta: serde_json::Value =
                serde_json::from_slice(&fs::read(&sidecar).expect("sidecar"))
                    .expect("sidecar JSON");
            assert_eq!(meta["zone"], "bowl", "{meta}");
            let image = sidecar.with_extension("jpg");
            let source = meta["source"].as_str().expect("the frame's source name");
            let to = if source.contains("-cat") {
                n_cats += 1;
                cats
            } else {
                n_empty += 1;
                background
            };
            fs::copy(&image, to.join(image.file_name().expect("name"))).expect("sorting a crop");
        }
    }
    (n_cats, n_empty)
}

#[test]
fn day_one_with_a_fixed_camera() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();

    // The user's photos, and a first bundle fitted on them alone.
    let cats = photos(&shared, "Cat");
    let (fit_cats, visiting) = cats.split_at(cats.len() - 12);
    let data = dir.join("PetImages");
    copy_into(&data.join("Cat"), &fit_cats[..120]);
    copy_into(&data.join("Dog"), &photos(&shared, "Dog")[..120]);
    let photos_bundle = dir.join("photos.lookout");
    fit_pooled_lite0(&shared, &data, &photos_bundle, 10, &[]);

    // Day one: the camera's first evening (6 cat frames, 18 empty ones), watched with the bowl zone and every
    // frame's crop captured.
    let porch = scene(&shared);
    let camera = dir.join("camera");
    let mut day1 = write_frames(
        &camera,
        NightMode::Colour,
        "a",
        &porch,
        &visiting[..6],
        "cat",
        6,
        1,
    );
    day1.extend(write_frames(
        &camera,
        NightMode::Colour,
        "b",
        &porch,
        &[],
        "empty",
        18,
        100,
    ));
    let captured = dir.join("captured");
    let zone = format!("bowl={BOWL}");
    let out = run_ok(
        command("lookout-edge")
            .args(["watch", "--model"])
            .arg(&photos_bundle)
            .arg("--source")
            .arg(format!("dir:{}", camera.display()))
            .args([
                "--zone",
                &zone,
                "--no-drop",
                "--fps",
                "0",
                "--json",
                "--capture",
            ])
            .arg(&captured)
            .args(["--capture-when", "every:1", "--capture-interval", "0"]),
    );
    let lines = json_lines(&out.stdout);
    let frames: Vec<_> = lines.iter().filter(|l| l["type"] == "frame").collect();
    assert_eq!(frames.len(), day1.len(), "one line per frame and zone");
    assert!(
        frames.iter().all(|l| l["zone"] == "bowl"),
        "{:?}",
        frames.first()
    );

    let sorted = dir.join("sorted");
    let (n_cats, n_empty) = sort_by_hand(&captured, &data.join("Cat"), &sorted.join("empty"));
    assert_eq!(
        (n_cats, n_empty),
        (6, 18),
        "every frame's crop was captured once"
    );
    // What was captured is the zone's crop, not the frame.
    let crop = fs::read_dir(sorted.join("empty"))
        .expect("sorted")
        .next()
        .expect("a crop")
        .expect("entry")
        .path();
    let (w, h) = image::image_dimensions(&crop).expect("a crop's size");
    assert_eq!((w, h), (256, 264), "the bowl zone of a 640×480 frame");

    // Fit again with the camera's frames: the cats into Cat/, the empty porch as the background; views that
    // look like a camera, and the rejection calibrated on them.
    let camera_bundle = dir.join("camera.lookout");
    let fitted = fit_pooled_lite0(
        &shared,
        &data,
        &camera_bundle,
        10,
        &[
            "--background",
            &sorted.join("empty").to_string_lossy(),
            "--augment",
            "2",
            "--augment-policy",
            "camera",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&fitted.stdout).expect("fit JSON");
    assert_eq!(
        report["background"], "background",
        "{}",
        report["background"]
    );
    // The rejection fitted with the views: calibrated on them, and the dim, noisy views the photos do not
    // cover in its bank.
    for field in ["calibrated_on_views", "bank_views"] {
        assert!(
            report["unknown"][field].as_u64().unwrap_or(0) > 0,
            "{field}: {}",
            report["unknown"]
        );
    }
    assert_eq!(report["unknown"]["keep"], 0.98, "{}", report["unknown"]);

    // The later evening through the new bundle, with the zone.
    let later = later_evening(&shared, &dir.join("later"), &visiting[6..]);
    let out = run_ok(
        command("lookout-edge")
            .args(["watch", "--model"])
            .arg(&camera_bundle)
            .arg("--source")
            .arg(format!("dir:{}", dir.join("later").display()))
            .args([
                "--zone",
                &zone,
                "--no-drop",
                "--fps",
                "0",
                "--json",
                "--smooth",
                "3",
            ]),
    );
    let lines = json_lines(&out.stdout);
    let frames: Vec<_> = lines.iter().filter(|l| l["type"] == "frame").collect();
    assert_eq!(frames.len(), later.len());
    let truth = |line: &serde_json::Value| {
        let frame = line["frame"].as_u64().expect("frame number") as usize;
        later[frame - 1].truth
    };
    let pet = |line: &&&serde_json::Value| line["unknown"] == false && line["background"] == false;
    let count = |truth_name: &str| frames.iter().filter(|l| truth(l) == truth_name).count();
    let empty_as_pet = frames
        .iter()
        .filter(|l| truth(l) == "empty")
        .filter(pet)
        .count();
    let empty_as_nothing = frames
        .iter()
        .filter(|l| truth(l) == "empty" && l["background"] == true)
        .count();
    let visitors_as_pet = frames
        .iter()
        .filter(|l| truth(l) == "visitor")
        .filter(pet)
        .count();
    let cats_as_cat = frames
        .iter()
        .filter(|l| truth(l) == "cat")
        .filter(pet)
        .filter(|l| l["label"] == "Cat")
        .count();
    eprintln!(
        "later evening: cats called Cat {cats_as_cat}/{}, empty called a pet {empty_as_pet}/{} (nothing: {empty_as_nothing}), \
         other animals called a pet {visitors_as_pet}/{}",
        count("cat"),
        count("empty"),
        count("visitor")
    );
    // Tolerances measured on this scene (see docs/camera.md): the empty porch is never a pet, and is answered
    // as the empty scene, not unknown, most of the time.
    assert_eq!(empty_as_pet, 0, "the empty porch is never a pet");
    assert!(
        empty_as_nothing * 10 >= count("empty") * 9,
        "{empty_as_nothing} empty frames answered nothing"
    );
    // Measured 12/12 and 10/12 in two runs (training is not seeded): at least 70 %.
    assert!(
        cats_as_cat * 10 >= count("cat") * 7,
        "{cats_as_cat} cat frames called Cat"
    );

    // Events: in the bowl zone, for the cats; none on the empty porch, and no Dog event.
    let events: Vec<_> = lines.iter().filter(|l| l["type"] == "event").collect();
    assert!(events.iter().all(|e| e["zone"] == "bowl"), "{events:?}");
    let event_frames: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["label"].as_str().unwrap_or("?"), truth(e)))
        .collect();
    // Training is not seeded (candle's CPU generator), so a visit's smoothed score may stay under the threshold
    // in some runs (measured 1 or 2 events for the two visits): at least one Cat event, at a cat frame.
    assert!(
        event_frames
            .iter()
            .any(|(label, t)| *label == "Cat" && *t == "cat"),
        "a Cat event during a visit: {event_frames:?}"
    );
    assert!(
        event_frames.iter().all(|(_, t)| *t != "empty"),
        "no event fires on the empty porch: {event_frames:?}"
    );
    assert!(
        event_frames.iter().all(|(label, _)| *label == "Cat"),
        "no other event: {event_frames:?}"
    );
}

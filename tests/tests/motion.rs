//! `watch --motion`: on a fixed camera's video that is mostly a still scene with two visits (`lookout_e2e::scene`:
//! a real scene photo, real cats at the bowl, sensor noise in every frame), the gated run fires the same events
//! as the run that classifies every frame, invents none, and runs the model on a small share of the frames, on
//! every frame of a visit among them.

use std::path::Path;

use lookout_e2e::scene::{still_with_visits, BOWL};
use lookout_e2e::{command, fit_small_lite0, json_lines, require_shared, run_ok};
use serde_json::Value;

fn watch(bundle: &Path, video: &Path, motion: bool) -> Vec<Value> {
    let mut cmd = command("lookout-edge");
    cmd.args([
        "watch",
        "--json",
        "--no-drop",
        "--fps",
        "0",
        "--smooth",
        "3",
        "--roi",
        BOWL,
        "--model",
    ])
    .arg(bundle)
    .arg("--source")
    .arg(format!("dir:{}", video.display()));
    if motion {
        cmd.arg("--motion");
    }
    json_lines(&run_ok(&mut cmd).stdout)
}

fn events(lines: &[Value]) -> Vec<(String, String, u64)> {
    lines
        .iter()
        .filter(|l| l["type"] == "event" || l["type"] == "clear")
        .map(|l| {
            (
                l["type"].as_str().unwrap_or_default().to_string(),
                l["label"].as_str().unwrap_or_default().to_string(),
                l["frame"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn motion_gated_watch_fires_every_visit_invents_nothing_and_rests_on_a_still_scene() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    let dir = tmp.path().join("video");
    let visits = still_with_visits(&shared, &dir);

    let every = watch(&bundle, &dir, false);
    let gated = watch(&bundle, &dir, true);
    let (every_events, gated_events) = (events(&every), events(&gated));
    println!("every frame: {every_events:?}\n--motion:    {gated_events:?}");
    assert!(
        every_events.iter().any(|(kind, _, _)| kind == "event"),
        "the visits fire no event even when every frame is classified: nothing to compare"
    );
    // The same events in the same order, each within a frame or two (a still frame keeps the last answer).
    assert_eq!(
        gated_events.len(),
        every_events.len(),
        "{gated_events:?} vs {every_events:?}"
    );
    for (g, e) in gated_events.iter().zip(&every_events) {
        assert_eq!((&g.0, &g.1), (&e.0, &e.1));
        assert!(g.2.abs_diff(e.2) <= 2, "{g:?} vs {e:?}");
    }

    let frames: Vec<&Value> = gated.iter().filter(|l| l["type"] == "frame").collect();
    assert_eq!(frames.len(), visits.len());
    for (frame, visit) in frames.iter().zip(&visits) {
        if *visit {
            assert_eq!(
                frame["model_ran"], true,
                "a visit's frame was not classified: {frame}"
            );
        }
    }
    let ran = frames.iter().filter(|f| f["model_ran"] == true).count();
    let summary = gated
        .iter()
        .find(|l| l["type"] == "summary")
        .expect("summary");
    assert_eq!(summary["model_runs"].as_u64(), Some(ran as u64));
    println!(
        "--motion: the model ran on {ran} of {} frames",
        frames.len()
    );
    assert!(
        ran * 100 < frames.len() * 40,
        "the model ran on {ran} of {} frames",
        frames.len()
    );
    let every_ran = every
        .iter()
        .filter(|l| l["type"] == "frame" && l["model_ran"] == true)
        .count();
    assert_eq!(
        every_ran,
        visits.len(),
        "without --motion every frame is classified"
    );
}

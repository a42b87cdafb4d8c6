//! `lookout-edge watch` takes a new bundle without a restart: the bundle file replaced (a rename, as scp and
//! rsync leave it) or SIGHUP; a truncated bundle is refused while the running one goes on; no frame is lost or
//! fails across a switch. A bundle with other labels switches in too: the old labels' events end at the switch,
//! actions follow their label by name, and one without a label an action names is refused.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use lookout_edge::pipeline::reload::bundle_sha256;
use lookout_shared::bundle::{Bundle, BundleHeader};
use serde_json::Value;

/// A running `watch --json`, its stdout lines read on a thread; killed when dropped.
struct Watching {
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watching {
    fn start(args: &[&str]) -> Watching {
        let mut child = Command::new(common::bin())
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watch");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if send.send(value).is_err() {
                    return;
                }
            }
        });
        Watching {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line from now on that `wanted` accepts; panics after 30 s.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {what} within 30 s; last lines: {:?}",
                    self.seen.iter().rev().take(3).collect::<Vec<_>>()
                )
            });
            self.seen.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    fn frames(&mut self, n: usize) {
        for _ in 0..n {
            self.wait_for("frame", |l| l["type"] == "frame");
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// Puts `bytes` at `path` as scp and rsync do: a temporary file renamed over it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("incoming");
    std::fs::write(&tmp, bytes).expect("writing the new bundle");
    std::fs::rename(&tmp, path).expect("renaming it over the running one");
}

/// A camera folder in `dir`: three photos of the first class, then three of the second.
fn camera(shared: &Path, dir: &Path, classes: [&str; 2]) -> std::path::PathBuf {
    let camera = dir.join("camera");
    std::fs::create_dir(&camera).expect("camera folder");
    let photos = classes
        .iter()
        .flat_map(|class| common::photos(shared, class, 3));
    for (i, photo) in photos.enumerate() {
        std::fs::copy(photo, camera.join(format!("{i:02}.jpg"))).expect("copy photo");
    }
    camera
}

fn model_line(event: &'static str) -> impl Fn(&Value) -> bool {
    move |l| l["type"] == "model" && l["event"] == event
}

#[test]
fn a_replaced_bundle_or_sighup_switches_between_two_frames_and_bad_bundles_are_refused() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    let camera = camera(&shared, tmp.path(), ["Cat", "Dog"]);
    // The running bundle, and a retrained one with the same labels (another decision threshold).
    let running = tmp.path().join("pets.lookout");
    std::fs::copy(&bundles.sigmoid, &running).expect("copy bundle");
    let retrained_path = tmp.path().join("retrained.lookout");
    let retrained_bytes = variant(&bundles.sigmoid, &retrained_path, |h| h.threshold = 0.2);
    let (old_sha, new_sha) = (
        bundle_sha256(&running).expect("checksum"),
        bundle_sha256(&retrained_path).expect("checksum"),
    );
    assert_ne!(old_sha, new_sha);

    let source = format!("dir:{}", camera.display());
    let model = running.to_str().expect("utf-8 path");
    let mut watching = Watching::start(&[
        "--json",
        "--loop",
        "--no-drop",
        "--fps",
        "10",
        "--model",
        model,
        "--source",
        &source,
    ]);
    let start = watching.wait_for("the start line", model_line("start"));
    assert_eq!(start["sha256"], old_sha.as_str());
    assert_eq!(start["labels"], serde_json::json!(["dog", "cat"]));
    assert_eq!(start["precision"], "f32");
    watching.frames(6);

    // Replaced on disk: loaded, self-tested on the frames seen, switched.
    replace(&running, &retrained_bytes);
    let switch = watching.wait_for("a switch", model_line("switch"));
    assert_eq!(switch["trigger"], "file");
    assert_eq!(switch["sha256"], new_sha.as_str());
    assert_eq!(switch["previous_sha256"], old_sha.as_str());
    let tested = switch["self_test"]["frames"]
        .as_u64()
        .expect("self-test frames");
    assert!((1..=8).contains(&tested), "{switch}");
    assert!(switch["self_test"]["changed"].as_u64() <= Some(tested));
    watching.frames(3);

    // SIGHUP loads it again.
    watching.signal("HUP");
    let again = watching.wait_for("a switch on SIGHUP", model_line("switch"));
    assert_eq!(again["trigger"], "signal");
    assert_eq!(again["sha256"], new_sha.as_str());
    assert_eq!(again["previous_sha256"], new_sha.as_str());
    watching.frames(3);

    // A truncated bundle (a copy cut short): refused, the running one goes on.
    let original = std::fs::read(&bundles.sigmoid).expect("read bundle");
    replace(&running, &original[..original.len() / 2]);
    let refused = watching.wait_for("a refusal", model_line("refused"));
    assert_eq!(refused["sha256"], new_sha.as_str(), "{refused}");
    assert_eq!(refused["trigger"], "file");
    assert!(refused["reason"]
        .as_str()
        .is_some_and(|r| !r.contains('\n')));
    watching.frames(3);

    // No frame lost or failed across the switches: with --no-drop every frame number comes once, in order.
    watching.signal("TERM");
    watching.wait_for("the summary", |l| l["type"] == "summary");
    let numbers: Vec<u64> = watching
        .seen
        .iter()
        .filter(|l| l["type"] == "frame")
        .map(|l| l["frame"].as_u64().expect("frame number"))
        .collect();
    assert!(numbers.len() >= 18, "{} frames", numbers.len());
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "frame numbers not continuous: {numbers:?}"
    );
    assert!(watching.seen.iter().all(|l| l["type"] != "error"));
    // The switch fell between two frames that were both classified.
    let switched_at = switch["frame"].as_u64().expect("switch frame");
    assert!(numbers.contains(&(switched_at + 1)));
}

/// The bundle at `from` with its header edited, written at `path`; its bytes.
fn variant(from: &Path, path: &Path, edit: impl FnOnce(&mut BundleHeader)) -> Vec<u8> {
    let mut bundle = Bundle::read_file(from).expect("read bundle");
    edit(&mut bundle.header);
    bundle.write_file(path).expect("write bundle");
    std::fs::read(path).expect("read bundle")
}

/// The sigmoid bundle's weights under other labels (index 0 answers dog photos, index 1 cat photos).
fn relabelled(sigmoid: &Path, labels: [&str; 2], path: &Path) -> Vec<u8> {
    variant(sigmoid, path, |h| {
        h.labels = labels.map(String::from).to_vec()
    })
}

#[test]
fn a_bundle_with_other_labels_ends_the_old_events_and_actions_follow_their_label_by_name() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    // Runs of three: each label's event fires and clears within a loop.
    let camera = camera(&shared, tmp.path(), ["Dog", "Cat"]);
    let running = tmp.path().join("pets.lookout");
    std::fs::copy(&bundles.sigmoid, &running).expect("copy bundle");
    let hound_cat = relabelled(
        &bundles.sigmoid,
        ["hound", "cat"],
        &tmp.path().join("a.lookout"),
    );
    let hound_kitten = relabelled(
        &bundles.sigmoid,
        ["hound", "kitten"],
        &tmp.path().join("b.lookout"),
    );
    let source = format!("dir:{}", camera.display());
    let mut watching = Watching::start(&[
        "--json",
        "--loop",
        "--no-drop",
        "--fps",
        "10",
        "--smooth",
        "2",
        "--when",
        "cat",
        "--exec",
        "true",
        "--model",
        running.to_str().expect("utf-8 path"),
        "--source",
        &source,
    ]);
    watching.wait_for("the start line", model_line("start"));
    // A dog event and a cat event, and enough frames for the self-test to hold dog photos.
    watching.wait_for("a dog event", |l| {
        l["type"] == "event" && l["label"] == "dog"
    });
    watching.wait_for("a cat event", |l| {
        l["type"] == "event" && l["label"] == "cat"
    });
    watching.frames(6);

    // Other labels, but `cat` (which --when acts on) is still there: switched.
    replace(&running, &hound_cat);
    let switch = watching.wait_for("a switch", model_line("switch"));
    assert_eq!(switch["labels"], serde_json::json!(["hound", "cat"]));
    assert_eq!(
        switch["labels_changed"]["added"],
        serde_json::json!(["hound"])
    );
    assert_eq!(
        switch["labels_changed"]["removed"],
        serde_json::json!(["dog"])
    );
    // The dog photos it saw are now `hound`: by name, those answers changed.
    let changed = switch["self_test"]["changed"].as_u64().expect("changed");
    assert!(changed >= 1, "{switch}");
    let switch_at = watching.seen.len() - 1;
    watching.wait_for("a hound event", |l| {
        l["type"] == "event" && l["label"] == "hound"
    });
    watching.wait_for("a cat event", |l| {
        l["type"] == "event" && l["label"] == "cat"
    });

    // `cat` is gone from this one: refused, the running bundle goes on.
    replace(&running, &hound_kitten);
    let refused = watching.wait_for("a refusal", model_line("refused"));
    let reason = refused["reason"].as_str().expect("reason");
    assert!(
        reason.contains("no label \"cat\", which --when acts on"),
        "{reason}"
    );
    assert_eq!(refused["labels"], serde_json::json!(["hound", "cat"]));
    watching.wait_for("a cat event", |l| {
        l["type"] == "event" && l["label"] == "cat"
    });

    watching.signal("TERM");
    watching.wait_for("the summary", |l| l["type"] == "summary");
    // Every event ends before its label goes: at the switch no `dog` event is open, and none comes after.
    let (before, after) = watching.seen.split_at(switch_at);
    let count = |lines: &[Value], kind: &str, label: &str| {
        lines
            .iter()
            .filter(|l| l["type"] == kind && l["label"] == label)
            .count()
    };
    assert_eq!(count(before, "event", "dog"), count(before, "clear", "dog"));
    assert_eq!(
        count(after, "event", "dog") + count(after, "clear", "dog"),
        0
    );
    // Events and clears alternate per label, across the switch too.
    for label in ["dog", "hound", "cat"] {
        let mut open = false;
        for line in watching.seen.iter().filter(|l| l["label"] == label) {
            match line["type"].as_str() {
                Some("event") => {
                    assert!(!std::mem::replace(&mut open, true), "{label}: two events")
                }
                Some("clear") => assert!(
                    std::mem::take(&mut open),
                    "{label}: a clear without an event"
                ),
                _ => {}
            }
        }
    }
    let numbers: Vec<u64> = watching
        .seen
        .iter()
        .filter(|l| l["type"] == "frame")
        .map(|l| l["frame"].as_u64().expect("frame number"))
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
}

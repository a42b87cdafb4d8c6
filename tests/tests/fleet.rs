//! A fleet over a real broker (mosquitto): `lookout publish` sends a retrained bundle to three running
//! `watch --mqtt` cameras, which check, self-test and switch without dropping a frame, and the table says so; a
//! camera started after the publish gets the retained bundle; a bundle whose announced checksum is wrong and
//! a corrupted bundle are refused by every camera, which keep running the last good one; `lookout fleet` lists
//! what each runs. A bundle with other labels switches in: Home Assistant loses the entities of the labels that
//! went and finds the new ones.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lookout_e2e::mosquitto::{have_mosquitto, retained, Broker};
use lookout_e2e::{command, copy_into, fit_small_lite0, photos, require_shared, run_ok, which};
use lookout_fleet::protocol::{announcement_topic, chunks, sha256_hex, Announcement};
use lookout_shared::bundle::Bundle;
use serde_json::Value;

/// A running `watch --json --mqtt …/home/NAME`, its stdout lines gathered on a thread; killed when dropped.
struct Camera {
    name: String,
    bundle: PathBuf,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Camera {
    fn start(name: &str, dir: &Path, bundle: &Path, frames: &Path, port: u16) -> Camera {
        Camera::start_with(name, dir, bundle, frames, port, &[])
    }

    /// [`Camera::start`] with more `watch` arguments.
    fn start_with(
        name: &str,
        dir: &Path,
        bundle: &Path,
        frames: &Path,
        port: u16,
        extra: &[&str],
    ) -> Camera {
        let own = dir.join(format!("{name}.lookout"));
        std::fs::copy(bundle, &own).expect("the camera's bundle");
        let mut child = command("lookout-edge")
            .args([
                "watch",
                "--json",
                "--loop",
                "--no-drop",
                "--fps",
                "8",
                "--model",
            ])
            .arg(&own)
            .arg("--source")
            .arg(format!("dir:{}", frames.display()))
            .arg("--mqtt")
            .arg(format!("mqtt://127.0.0.1:{port}/home/{name}"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let gathered = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                gathered.lock().expect("lines").push(value);
            }
        });
        Camera {
            name: name.into(),
            bundle: own,
            child,
            lines,
        }
    }

    /// The model lines printed so far.
    fn models(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lines");
        lines
            .iter()
            .filter(|l| l["type"] == "model")
            .cloned()
            .collect()
    }

    /// Waits up to 60 s for a model line that `wanted` accepts.
    fn wait_model(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.models().into_iter().find(|l| wanted(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "camera {}: no {what}; model lines: {:?}",
                self.name,
                self.models()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends it with SIGTERM; every line it printed.
    fn stop(mut self) -> Vec<Value> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        let lines = self.lines.lock().expect("lines").clone();
        lines
    }
}

/// A copy of `bundle` with another decision threshold: the same labels, another checksum (a "retrained" one).
fn variant(bundle: &Path, dir: &Path, threshold: f32) -> PathBuf {
    let mut b = Bundle::read_file(bundle).expect("read bundle");
    b.header.threshold = threshold;
    let path = dir.join(format!("variant-{threshold}.lookout"));
    b.write_file(&path).expect("write bundle");
    path
}

fn checksum(bytes: &[u8]) -> String {
    lookout_fleet::protocol::hex(&bytes[bytes.len() - 32..])
}

/// Publishes `announcement` and the chunks of `bytes` with mosquitto_pub, as a forger (or a broken publisher)
/// would: `lookout publish` itself never sends a bundle it cannot read.
fn forge(port: u16, dir: &Path, announcement: &Announcement, bytes: &[u8]) {
    for (topic, chunk) in chunks("home", announcement, bytes) {
        publish_raw(port, dir, &topic, chunk);
    }
    let payload = serde_json::to_vec(announcement).expect("json");
    publish_raw(port, dir, &announcement_topic("home"), &payload);
}

/// One retained QoS 1 message, published with mosquitto_pub.
fn publish_raw(port: u16, dir: &Path, topic: &str, payload: &[u8]) {
    let file = dir.join("payload");
    std::fs::write(&file, payload).expect("payload");
    run_ok(
        std::process::Command::new(which("mosquitto_pub").expect("mosquitto_pub"))
            .args(["-p", &port.to_string(), "-q", "1", "-r", "-t", topic, "-f"])
            .arg(&file),
    );
}

/// Every frame number once, in order, and no error line: nothing was dropped or failed across a switch.
fn assert_continuous(name: &str, lines: &[Value]) {
    let numbers: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "frame")
        .filter_map(|l| l["frame"].as_u64())
        .collect();
    assert!(numbers.len() > 8, "{name}: {} frames", numbers.len());
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "{name}: {numbers:?}"
    );
    assert!(lines.iter().all(|l| l["type"] != "error"), "{name}");
}

fn publish(port: u16, bundle: &Path) -> (bool, Vec<Value>) {
    let out = command("lookout")
        .args(["publish", "--json", "--wait", "90", "--mqtt"])
        .arg(format!("mqtt://127.0.0.1:{port}/home"))
        .arg(bundle)
        .output()
        .expect("run lookout publish");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "publish printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), rows)
}

fn fleet(port: u16) -> Value {
    let out = run_ok(
        command("lookout")
            .args(["fleet", "--json", "--mqtt"])
            .arg(format!("mqtt://127.0.0.1:{port}/home")),
    );
    serde_json::from_slice(&out.stdout).expect("fleet JSON")
}

#[test]
fn publish_reaches_every_camera_which_switches_without_a_dropped_frame_and_bad_bundles_are_refused()
{
    let shared = require_shared!();
    if !have_mosquitto("publish_reaches_every_camera") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let first = fit_small_lite0(&shared, tmp.path(), 40);
    let retrained = variant(&first, tmp.path(), 0.3);
    let (first_bytes, retrained_bytes) = (
        std::fs::read(&first).expect("bundle"),
        std::fs::read(&retrained).expect("bundle"),
    );
    let (first_sha, new_sha) = (checksum(&first_bytes), checksum(&retrained_bytes));
    let frames = tmp.path().join("frames");
    copy_into(&frames, &photos(&shared, "Cat")[300..304]);
    copy_into(&frames, &photos(&shared, "Dog")[300..304]);
    let broker = Broker::start(tmp.path(), "allow_anonymous true");

    let cameras: Vec<Camera> = ["porch", "garage", "garden"]
        .iter()
        .map(|name| Camera::start(name, tmp.path(), &first, &frames, broker.port))
        .collect();
    for camera in &cameras {
        camera.wait_model("start", |l| {
            l["event"] == "start" && l["sha256"] == first_sha.as_str()
        });
    }
    // Each camera's report is retained: the publisher finds all three before it sends.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet(broker.port).as_object().map_or(0, |f| f.len()) < 3 {
        assert!(
            Instant::now() < deadline,
            "the cameras never reported on home/+/model"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The retrained bundle to the whole fleet: every camera checks, self-tests and switches.
    let (ok, rows) = publish(broker.port, &retrained);
    assert!(ok, "{rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        assert_eq!(row["outcome"], "switched", "{row}");
        assert_eq!(row["before"], first_sha.as_str());
        assert_eq!(row["after"], new_sha.as_str());
        assert!(
            row["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("self-test: ")),
            "{row}"
        );
    }
    for camera in &cameras {
        let switch = camera.wait_model("a switch", |l| l["event"] == "switch");
        assert_eq!(switch["trigger"], "mqtt");
        assert_eq!(switch["sha256"], new_sha.as_str());
        // Accepted, it replaced the bundle file: a restart runs it.
        assert_eq!(
            std::fs::read(&camera.bundle).expect("bundle"),
            retrained_bytes
        );
    }
    let listed = fleet(broker.port);
    for camera in &cameras {
        assert_eq!(listed[&camera.name]["sha256"], new_sha.as_str(), "{listed}");
    }

    // A camera that was off during the publish gets the retained bundle when it starts.
    let late = Camera::start("shed", tmp.path(), &first, &frames, broker.port);
    let switch = late.wait_model("the retained bundle", |l| l["event"] == "switch");
    assert_eq!(switch["sha256"], new_sha.as_str());

    // A bundle whose announced checksum is not its own, and a corrupted bundle honestly announced: refused by
    // every camera, which keep the retrained one.
    let third = std::fs::read(variant(&first, tmp.path(), 0.4)).expect("bundle");
    let mut wrong = Announcement::of(&third, None, 1).expect("announcement");
    wrong.file_sha256 = sha256_hex(b"another file");
    forge(broker.port, tmp.path(), &wrong, &third);
    let all: Vec<&Camera> = cameras.iter().chain([&late]).collect();
    for camera in &all {
        let refused = camera.wait_model("a refusal", |l| l["event"] == "refused");
        assert!(
            refused["reason"]
                .as_str()
                .is_some_and(|r| r.contains("is not the one its publisher announced")),
            "{refused}"
        );
        assert_eq!(refused["sha256"], new_sha.as_str());
    }
    let mut corrupted = third.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    forge(
        broker.port,
        tmp.path(),
        &Announcement::of(&corrupted, None, 2).expect("announcement"),
        &corrupted,
    );
    for camera in &all {
        camera.wait_model("a second refusal", |l| {
            l["event"] == "refused"
                && !l["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("publisher announced")
        });
        assert_eq!(
            std::fs::read(&camera.bundle).expect("bundle"),
            retrained_bytes
        );
    }

    // No frame failed or went missing across the switch: with --no-drop each frame number comes once, in order.
    for camera in cameras.into_iter().chain([late]) {
        let name = camera.name.clone();
        assert_continuous(&name, &camera.stop());
    }
}

#[test]
fn a_transfer_cut_by_a_broker_restart_resumes_and_nothing_partial_is_loaded() {
    let shared = require_shared!();
    if !have_mosquitto("a_transfer_cut_by_a_broker_restart") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let first = fit_small_lite0(&shared, tmp.path(), 40);
    let next = std::fs::read(variant(&first, tmp.path(), 0.3)).expect("bundle");
    let frames = tmp.path().join("frames");
    copy_into(&frames, &photos(&shared, "Cat")[300..304]);
    let mut broker = Broker::start(tmp.path(), "allow_anonymous true");
    let camera = Camera::start("porch", tmp.path(), &first, &frames, broker.port);
    camera.wait_model("start", |l| l["event"] == "start");

    // The announcement and half of the chunks, then the broker goes down (as a publisher cut off would leave it).
    let announcement = Announcement::of(&next, None, 1).expect("announcement");
    let parts = chunks("home", &announcement, &next);
    assert!(parts.len() >= 4, "{} chunks", parts.len());
    let payload = serde_json::to_vec(&announcement).expect("json");
    publish_raw(
        broker.port,
        tmp.path(),
        &announcement_topic("home"),
        &payload,
    );
    for (topic, chunk) in &parts[..parts.len() / 2] {
        publish_raw(broker.port, tmp.path(), topic, chunk);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        camera.models().len(),
        1,
        "a partial bundle was acted on: {:?}",
        camera.models()
    );
    broker.stop();
    std::thread::sleep(Duration::from_secs(1));
    broker.run();

    // The rest after the restart: the camera reconnects, gets the retained announcement and every chunk again,
    // and switches once the file is whole and its checksum the announced one.
    for (topic, chunk) in &parts[parts.len() / 2..] {
        publish_raw(broker.port, tmp.path(), topic, chunk);
    }
    let switch = camera.wait_model("the switch after the restart", |l| l["event"] == "switch");
    assert_eq!(switch["sha256"], announcement.sha256.as_str());
    assert_eq!(switch["trigger"], "mqtt");
    let bundle = camera.bundle.clone();
    let lines = camera.stop();
    assert!(lines.iter().all(|l| l["event"] != "refused"), "{lines:?}");
    assert_eq!(std::fs::read(bundle).expect("bundle"), next);
    assert_continuous("porch", &lines);
}

#[test]
fn a_bundle_with_other_labels_removes_the_old_entities_and_announces_the_new() {
    let shared = require_shared!();
    if !have_mosquitto("a_bundle_with_other_labels") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let first = fit_small_lite0(&shared, tmp.path(), 40);
    let mut relabelled = Bundle::read_file(&first).expect("read bundle");
    let labels = relabelled.header.labels.clone();
    assert_eq!(labels.len(), 2, "{labels:?}");
    // The second label is gone, `fox` is new.
    relabelled.header.labels[1] = "fox".into();
    let relabelled_path = tmp.path().join("relabelled.lookout");
    relabelled
        .write_file(&relabelled_path)
        .expect("write bundle");
    let frames = tmp.path().join("frames");
    copy_into(&frames, &photos(&shared, "Cat")[300..304]);
    copy_into(&frames, &photos(&shared, "Dog")[300..304]);
    let broker = Broker::start(tmp.path(), "allow_anonymous true");
    let discovery = ["--mqtt-discovery", "homeassistant"];
    let camera = Camera::start_with(
        "porch",
        tmp.path(),
        &first,
        &frames,
        broker.port,
        &discovery,
    );
    camera.wait_model("start", |l| l["event"] == "start");

    let (old, new) = (labels[1].to_lowercase(), "fox");
    let config = |label: &str| format!("homeassistant/binary_sensor/home_porch/{label}/config");
    let state = |label: &str| format!("home/porch/label/{label}");
    let kept = || retained(broker.port, &["homeassistant/#", "home/porch/#"], &[]);
    let has = |kept: &[lookout_e2e::mosquitto::Received], topic: &str| {
        kept.iter()
            .any(|m| m.topic == topic && !m.payload.is_empty())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = kept();
        if has(&now, &config(&old)) && has(&now, &state(&old)) {
            break;
        }
        assert!(Instant::now() < deadline, "no entity for {old}: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (ok, rows) = publish(broker.port, &relabelled_path);
    assert!(ok, "{rows:?}");
    let detail = rows[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.ends_with(&format!("labels added: fox; removed: {}", labels[1])),
        "{detail}"
    );
    let switch = camera.wait_model("a switch", |l| l["event"] == "switch");
    assert_eq!(switch["labels_changed"]["added"], serde_json::json!([new]));
    assert_eq!(
        switch["labels_changed"]["removed"],
        serde_json::json!([labels[1]])
    );
    // What a fresh client (Home Assistant after a restart) finds: no trace of the old label, the new one there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = kept();
        let done = !has(&now, &config(&old))
            && !has(&now, &state(&old))
            && has(&now, &config(new))
            && has(&now, &state(new));
        if done {
            let device = now
                .iter()
                .find(|m| m.topic == config(new))
                .map(|m| m.payload.clone())
                .unwrap_or_default();
            assert!(
                device.contains("fox") && !device.contains(&labels[1]),
                "{device}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "after the switch: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = camera.stop();
    assert_continuous("porch", &lines);
}

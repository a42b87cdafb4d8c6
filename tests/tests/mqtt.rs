//! `watch --mqtt`: against a real broker (Debian's mosquitto, started here on a free loopback port), read by a
//! real client (mosquitto_sub). Events arrive as JSON, Home Assistant finds the labels, availability is
//! retained (and is the last will), events during a broker restart are delivered after it, credentials are
//! checked and never echoed, TLS works with the broker's own CA; with zones, each zone has its topics and its Home
//! Assistant entities.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lookout_e2e::mosquitto::{have_mosquitto, retained, Broker, Received};
use lookout_e2e::{command, fit_small_lite0, free_port, json_lines, photos, require_shared, which};

/// One bundle for every test here, fitted once.
fn bundle(shared: &Path) -> &'static Path {
    static BUNDLE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = BUNDLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let bundle = fit_small_lite0(shared, dir.path(), 40);
        (dir, bundle)
    });
    path
}

/// A camera folder that alternates: `run` cats, `run` dogs, `cycles` times (photos the head was not fitted on).
fn alternating_camera(shared: &Path, dir: &Path, run: usize, cycles: usize) -> PathBuf {
    let camera = dir.join("camera");
    std::fs::create_dir_all(&camera).expect("camera folder");
    let (cats, dogs) = (photos(shared, "Cat"), photos(shared, "Dog"));
    let mut n = 0;
    for cycle in 0..cycles {
        for class in [&cats, &dogs] {
            for photo in &class[300 + cycle * run..300 + (cycle + 1) * run] {
                std::fs::copy(photo, camera.join(format!("{n:04}.jpg"))).expect("copy");
                n += 1;
            }
        }
    }
    camera
}

/// A mosquitto_sub client collecting what it receives; killed when dropped.
struct Subscriber {
    child: Child,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Subscriber {
    /// Subscribes to `topics` at QoS 1 with a persistent session (`-c`, id `id`), so it resumes after a
    /// broker restart; `extra` are more mosquitto_sub arguments (credentials, TLS).
    fn start(port: u16, id: &str, topics: &[&str], extra: &[&str]) -> Subscriber {
        let mut cmd = Command::new(which("mosquitto_sub").expect("mosquitto_sub"));
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-c"])
            .args(["-i", id, "-F", "%r\t%t\t%p"])
            .args(extra);
        for topic in topics {
            cmd.args(["-t", topic]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '\t');
                if let (Some(r), Some(topic), Some(payload)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    sink.lock().expect("lock").push(Received {
                        retained: r == "1",
                        topic: topic.to_string(),
                        payload: payload.to_string(),
                    });
                }
            }
        });
        Subscriber { child, received }
    }

    fn on(&self, topic: &str) -> Vec<Received> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for what was received, or `timeout`.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if done(&self.received.lock().expect("lock")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bundle's own checksum (its last 32 bytes), hex.
fn bundle_sha(bundle: &Path) -> String {
    let bytes = std::fs::read(bundle).expect("bundle");
    bytes[bytes.len() - 32..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `lookout-edge watch ARGS --model BUNDLE --source dir:CAMERA`.
#[test]
fn a_camera_named_like_the_fleets_bundle_topic_is_refused_with_one_line() {
    let shared = require_shared!();
    let bundle = bundle(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    let camera = tmp.path().join("camera");
    lookout_e2e::copy_into(&camera, &photos(&shared, "Dog")[300..302]);
    // home/bundle would put the camera's topics among the fleet's bundles (home/bundle/ID/N).
    let out = watch_command(bundle, &camera, &["--json"])
        .args([
            "--mqtt",
            &format!("mqtt://127.0.0.1:{}/home/bundle", free_port()),
        ])
        .output()
        .expect("watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("cannot be named `bundle`") && errors[0].contains("home/porch"),
        "{stderr}"
    );
    assert_eq!(
        json_lines(&out.stdout)
            .iter()
            .filter(|l| l["type"] == "frame")
            .count(),
        0
    );
}

fn watch_command(bundle: &Path, camera: &Path, args: &[&str]) -> Command {
    let mut cmd = command("lookout-edge");
    cmd.arg("watch")
        .args(args)
        .arg("--model")
        .arg(bundle)
        .arg("--source")
        .arg(format!("dir:{}", camera.display()));
    cmd
}

/// The `"type": "mqtt"` summary line of what a `watch --json` printed.
fn mqtt_summary(lines: &[serde_json::Value]) -> serde_json::Value {
    lines
        .iter()
        .find(|l| l["type"] == "mqtt")
        .expect("the mqtt summary line")
        .clone()
}

/// (type, label, frame) of an event (or clear) line or message.
fn event_key(e: &serde_json::Value) -> (String, String, u64) {
    (
        e["type"].as_str().unwrap_or_default().to_string(),
        e["label"].as_str().unwrap_or_default().to_string(),
        e["frame"].as_u64().unwrap_or_default(),
    )
}

/// (type, label, frame) of each event/clear line a `watch --json` printed in `zone` (`None`: without zones).
fn printed_events(stdout: &[u8], zone: Option<&str>) -> BTreeSet<(String, String, u64)> {
    json_lines(stdout)
        .iter()
        .filter(|l| l["type"] == "event" || l["type"] == "clear")
        .filter(|l| l["zone"].as_str() == zone)
        .map(event_key)
        .collect()
}

/// The payloads received on `topic`, as JSON.
fn json_on(received: &[Received], topic: &str) -> Vec<serde_json::Value> {
    received
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| {
            serde_json::from_str(&m.payload).unwrap_or_else(|e| panic!("{topic} ({e}): {m:?}"))
        })
        .collect()
}

/// The message retained on `topic`, as [`retained`] found it.
fn retained_on(kept: &[Received], topic: &str) -> Received {
    kept.iter()
        .find(|m| m.topic == topic)
        .unwrap_or_else(|| panic!("nothing retained on {topic}: {kept:?}"))
        .clone()
}

/// What a label's retained state should be after the printed events: its last change, `ON` or `OFF`.
fn last_state(printed: &BTreeSet<(String, String, u64)>, label: &str) -> Option<&'static str> {
    printed
        .iter()
        .filter(|(_, l, _)| l == label)
        .max_by_key(|(_, _, frame)| *frame)
        .map(|(kind, _, _)| if kind == "event" { "ON" } else { "OFF" })
}

#[test]
fn events_discovery_and_availability_reach_the_broker_through_a_restart() {
    let shared = require_shared!();
    if !have_mosquitto(module_path!()) {
        return;
    }
    let bundle = bundle(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    // 6 cats, 6 dogs, 7 times: ~26 events and clears over 8.4 s at 10 fps.
    let camera = alternating_camera(&shared, tmp.path(), 6, 7);
    let mut broker = Broker::start(tmp.path(), "allow_anonymous true");
    let base = "lookout/cam1";
    let subscriber = Subscriber::start(
        broker.port,
        "test-subscriber",
        &["lookout/cam1/#", "homeassistant/#"],
        &[],
    );
    // The subscriber's session must exist before anything is published.
    std::thread::sleep(Duration::from_millis(300));

    let watch = watch_command(bundle, &camera, &["--json", "--fps", "10", "--smooth", "2"])
        .args([
            "--mqtt",
            &format!("mqtt://127.0.0.1:{}/{base}", broker.port),
        ])
        .args(["--mqtt-discovery", "homeassistant", "--mqtt-frames"])
        .args(["--mqtt-flush-timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");

    // Two events in, the broker goes away for 2 s, as when its host restarts it.
    let event_topic = format!("{base}/event");
    assert!(
        subscriber.wait_for(Duration::from_secs(60), |r| {
            r.iter().filter(|m| m.topic == event_topic).count() >= 2
        }),
        "no events reached the broker"
    );
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.run();

    let out = watch.wait_with_output().expect("watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "watch failed: {stderr}");
    assert!(
        stderr.contains("mqtt: lost the broker") && stderr.contains("mqtt: reconnected"),
        "{stderr}"
    );
    let lines = json_lines(&out.stdout);
    let summary = mqtt_summary(&lines);
    let printed = printed_events(&out.stdout, None);
    assert!(printed.len() >= 10, "too few events to test: {printed:?}");
    assert!(summary["outages"].as_u64() >= Some(1), "{summary}");
    assert!(
        summary["queued_offline"].as_u64() >= Some(1),
        "no event fell in the outage: {summary}"
    );
    assert_eq!(summary["dropped"], 0, "{summary}");
    assert_eq!(summary["undelivered"], 0, "{summary}");
    assert_eq!(
        summary["delivered"].as_u64(),
        Some(printed.len() as u64),
        "{summary}"
    );

    // Every event printed reached the subscriber (at least once: QoS 1), with what an automation needs.
    let sha = bundle_sha(bundle);
    let ok = subscriber.wait_for(Duration::from_secs(20), |r| {
        let got: BTreeSet<u64> = json_on(r, &event_topic)
            .iter()
            .filter_map(|v| v["frame"].as_u64())
            .collect();
        printed.iter().all(|(_, _, frame)| got.contains(frame))
    });
    let events = json_on(&subscriber.on(&event_topic), &event_topic);
    let received: BTreeSet<(String, String, u64)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["model_sha256"], sha.as_str(), "{e}");
            assert!(e["score"].as_f64().is_some() && e["time"].as_f64() > Some(1.7e9));
            assert!(e["label_index"].as_u64().is_some(), "{e}");
            event_key(e)
        })
        .collect();
    assert!(
        ok,
        "missing events: printed {printed:?}, received {received:?}"
    );
    assert_eq!(received, printed);
    // Frame states flowed too (QoS 0, not through the outage).
    let states = subscriber.on(&format!("{base}/state"));
    assert!(states.len() > 20, "{} frame states", states.len());
    let state: serde_json::Value = serde_json::from_str(&states[0].payload).expect("state JSON");
    assert!(state["scores"]["Cat"].as_f64().is_some(), "{state}");

    // What a fresh client (Home Assistant starting later) finds retained.
    let kept = retained(broker.port, &["lookout/cam1/#", "homeassistant/#"], &[]);
    let find = |topic: &str| retained_on(&kept, topic);
    assert!(kept.iter().all(|m| m.retained));
    assert_eq!(find("lookout/cam1/availability").payload, "offline");
    for (label, slug) in [("Cat", "cat"), ("Dog", "dog")] {
        let config: serde_json::Value = serde_json::from_str(
            &find(&format!(
                "homeassistant/binary_sensor/lookout_cam1/{slug}/config"
            ))
            .payload,
        )
        .expect("discovery JSON");
        assert_eq!(config["name"], label);
        assert_eq!(config["state_topic"], format!("{base}/label/{slug}"));
        assert_eq!(config["availability_topic"], format!("{base}/availability"));
        assert_eq!(config["unique_id"], format!("lookout_cam1_{slug}"));
        assert_eq!(
            (&config["payload_on"], &config["payload_off"]),
            (&"ON".into(), &"OFF".into())
        );
        assert_eq!(config["device"]["identifiers"][0], "lookout_cam1");
        // The retained state is the label's last change as printed.
        assert_eq!(
            Some(find(&format!("{base}/label/{slug}")).payload.as_str()),
            last_state(&printed, label)
        );
    }
    let sensor: serde_json::Value =
        serde_json::from_str(&find("homeassistant/sensor/lookout_cam1/label/config").payload)
            .expect("sensor discovery JSON");
    assert_eq!(sensor["state_topic"], format!("{base}/state"));
}

#[test]
fn zones_publish_their_own_topics_and_home_assistant_entities() {
    let shared = require_shared!();
    if !have_mosquitto(module_path!()) {
        return;
    }
    let bundle = bundle(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    // 5 cats, 5 dogs, twice; each half of every photo is classified on its own.
    let camera = alternating_camera(&shared, tmp.path(), 5, 2);
    let broker = Broker::start(tmp.path(), "allow_anonymous true");
    let (base, node) = ("lookout/yard", "lookout_yard");
    let subscriber = Subscriber::start(
        broker.port,
        "test-zones",
        &["lookout/yard/#", "homeassistant/#"],
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = watch_command(
        bundle,
        &camera,
        &["--json", "--fps", "10", "--no-drop", "--smooth", "2"],
    )
    .args(["--zone", "left=0,0,0.5,1", "--zone", "right=0.5,0,0.5,1"])
    .args([
        "--mqtt",
        &format!("mqtt://127.0.0.1:{}/{base}", broker.port),
    ])
    .args(["--mqtt-discovery", "homeassistant", "--mqtt-frames"])
    .args(["--mqtt-flush-timeout", "30"])
    .output()
    .expect("watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "watch failed: {stderr}");
    let lines = json_lines(&out.stdout);
    let summary = mqtt_summary(&lines);
    assert_eq!(summary["undelivered"], 0, "{summary}");
    // "offline" is the last message sent: after it arrives, everything published before it has too.
    assert!(
        subscriber.wait_for(Duration::from_secs(20), |r| {
            r.iter()
                .any(|m| m.topic == format!("{base}/availability") && m.payload == "offline")
        }),
        "no offline"
    );
    let labels = ["Cat", "Dog"];

    let mut unique_ids = BTreeSet::new();
    let mut states = 0;
    let kept = retained(broker.port, &["lookout/yard/#", "homeassistant/#"], &[]);
    for zone in ["left", "right"] {
        // What the zone's state should say at each frame: its label as printed (or unknown / nothing).
        let frames: BTreeMap<u64, &str> = lines
            .iter()
            .filter(|l| l["type"] == "frame" && l["zone"] == zone)
            .map(|l| {
                let label = match (&l["unknown"], &l["background"]) {
                    (serde_json::Value::Bool(true), _) => "unknown",
                    (_, serde_json::Value::Bool(true)) => "nothing",
                    _ => l["label"].as_str().unwrap_or_default(),
                };
                (l["frame"].as_u64().expect("frame number"), label)
            })
            .collect();
        assert_eq!(frames.len(), 20, "one line per frame in {zone}");
        let printed = printed_events(&out.stdout, Some(zone));
        assert!(!printed.is_empty(), "no event in {zone}: {lines:?}");

        // The zone's events, all of them, on its own topic; its frame states too (QoS 0, only the newest waits:
        // nearly all of them, whatever the other zone's frames do).
        let (event_topic, state_topic) = (
            format!("{base}/{zone}/event"),
            format!("{base}/{zone}/state"),
        );
        let arrived = subscriber.wait_for(Duration::from_secs(20), |r| {
            let events: BTreeSet<_> = json_on(r, &event_topic).iter().map(event_key).collect();
            events == printed && json_on(r, &state_topic).len() * 4 >= frames.len() * 3
        });
        let events = json_on(&subscriber.on(&event_topic), &event_topic);
        let received = json_on(&subscriber.on(&state_topic), &state_topic);
        assert!(
            arrived,
            "{zone}: printed {printed:?}, received {events:?} and {} of {} frame states",
            received.len(),
            frames.len()
        );
        assert!(events.iter().all(|e| e["zone"] == zone), "{events:?}");
        for state in received {
            assert_eq!(state["zone"], zone, "{state}");
            let frame = state["frame"].as_u64().expect("frame");
            assert_eq!(state["label"], frames[&frame], "{state}");
            let scores: Vec<&String> = state["scores"]
                .as_object()
                .expect("scores")
                .keys()
                .collect();
            assert_eq!(scores, labels, "{state}");
            states += 1;
        }

        // Home Assistant: one entity per label in this zone, its state the last change printed there.
        for label in labels {
            let slug = label.to_lowercase();
            let topic = format!("homeassistant/binary_sensor/{node}/{zone}_{slug}/config");
            let config: serde_json::Value =
                serde_json::from_str(&retained_on(&kept, &topic).payload).expect("discovery JSON");
            assert_eq!(config["name"], format!("{zone} {label}"), "{config}");
            assert_eq!(config["unique_id"], format!("{node}_{zone}_{slug}"));
            assert_eq!(config["state_topic"], format!("{base}/{zone}/label/{slug}"));
            assert_eq!(config["availability_topic"], format!("{base}/availability"));
            assert_eq!(config["device"]["identifiers"][0], node);
            unique_ids.insert(config["unique_id"].to_string());
            let state = retained_on(&kept, &format!("{base}/{zone}/label/{slug}"));
            assert_eq!(
                state.payload,
                last_state(&printed, label).unwrap_or("OFF"),
                "{zone} {label}: {printed:?}"
            );
        }
        let sensor: serde_json::Value = serde_json::from_str(
            &retained_on(
                &kept,
                &format!("homeassistant/sensor/{node}/{zone}_label/config"),
            )
            .payload,
        )
        .expect("sensor discovery JSON");
        assert_eq!(sensor["state_topic"], state_topic);
    }
    assert_eq!(unique_ids.len(), 4, "{unique_ids:?}");
    assert_eq!(summary["frames"].as_u64(), Some(states), "{summary}");

    // Nothing for the whole frame: every topic is a zone's (or availability), every entity one of the above.
    let all = subscriber.received.lock().expect("lock").clone();
    let entities = all
        .iter()
        .filter(|m| m.topic.starts_with("homeassistant/binary_sensor/"))
        .map(|m| m.topic.as_str())
        .collect::<BTreeSet<_>>();
    assert_eq!(entities.len(), 4, "{entities:?}");
    for m in &all {
        let level = m
            .topic
            .strip_prefix("lookout/yard/")
            .map(|t| t.split('/').next());
        assert!(
            matches!(
                level,
                None | Some(Some("left" | "right" | "availability" | "model"))
            ),
            "published outside the zones: {m:?}"
        );
    }
    assert_eq!(
        retained_on(&kept, "lookout/yard/availability").payload,
        "offline"
    );
}

#[test]
fn credentials_are_checked_never_echoed_and_the_last_will_says_offline() {
    let shared = require_shared!();
    if !have_mosquitto(module_path!()) {
        return;
    }
    let bundle = bundle(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    let passwords = tmp.path().join("passwords");
    let status = Command::new(which("mosquitto_passwd").expect("mosquitto_passwd"))
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["pi", "correct horse battery"])
        .status()
        .expect("mosquitto_passwd");
    assert!(status.success());
    let broker = Broker::start(
        tmp.path(),
        &format!(
            "allow_anonymous false\npassword_file {}",
            passwords.display()
        ),
    );
    let camera = tmp.path().join("camera");
    lookout_e2e::copy_into(&camera, &photos(&shared, "Cat")[300..304]);
    let address = format!("mqtt://pi@127.0.0.1:{}/lookout/door", broker.port);

    // A wrong password: one line that says what to check; the password is never printed.
    let out = watch_command(bundle, &camera, &[])
        .args(["--mqtt", &address])
        .env("LOOKOUT_MQTT_PASSWORD", "wrong staple")
        .output()
        .expect("watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused the user name or password") || stderr.contains("not authorized"),
        "{stderr}"
    );
    assert!(stderr.contains("--mqtt-password-file"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains("wrong staple")
            && !String::from_utf8_lossy(&out.stdout).contains("wrong staple")
    );

    // The right password from a file; then the Pi loses power (SIGKILL): the broker publishes the last will.
    let password_file = tmp.path().join("mqtt-password");
    std::fs::write(&password_file, "correct horse battery\n").expect("password file");
    let subscriber = Subscriber::start(
        broker.port,
        "test-door",
        &["lookout/door/availability"],
        &["-u", "pi", "-P", "correct horse battery"],
    );
    let mut watch = watch_command(bundle, &camera, &["--loop", "--fps", "5"])
        .args(["--mqtt", &address, "--mqtt-password-file"])
        .arg(&password_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");
    let online = subscriber.wait_for(Duration::from_secs(30), |r| {
        r.iter().any(|m| m.payload == "online")
    });
    watch.kill().expect("kill watch");
    let _ = watch.wait();
    assert!(
        online,
        "never online: {:?}",
        subscriber.on("lookout/door/availability")
    );
    assert!(
        subscriber.wait_for(Duration::from_secs(10), |r| {
            r.last().is_some_and(|m| m.payload == "offline")
        }),
        "no last will: {:?}",
        subscriber.on("lookout/door/availability")
    );
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut watch.stderr.take().expect("stderr"), &mut stderr);
    assert!(!stderr.contains("correct horse"), "{stderr}");
}

#[test]
fn an_unreachable_broker_is_reported_once_and_the_watch_goes_on() {
    let shared = require_shared!();
    let bundle = bundle(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    let camera = tmp.path().join("camera");
    lookout_e2e::copy_into(&camera, &photos(&shared, "Dog")[300..306]);
    let port = free_port();
    // --no-drop: every photo is classified even when the machine is too busy for 10 frames/s (a loaded CI
    // runner once dropped one), so the count below is about MQTT, not about load.
    let out = watch_command(
        bundle,
        &camera,
        &["--json", "--fps", "10", "--no-drop", "--smooth", "2"],
    )
    .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}/lookout/yard")])
    .args(["--mqtt-flush-timeout", "0.5"])
    .output()
    .expect("watch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let reports: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mqtt:")).collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(
        reports[0].contains(&format!("cannot reach the broker at 127.0.0.1:{port}"))
            && reports[0].contains("watching on"),
        "{stderr}"
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.iter().filter(|l| l["type"] == "frame").count(), 6);
    let summary = mqtt_summary(&lines);
    let events = printed_events(&out.stdout, None).len() as u64;
    assert!(events >= 1, "{stderr}");
    assert_eq!(summary["undelivered"].as_u64(), Some(events), "{summary}");
    assert_eq!(
        summary["queued_offline"].as_u64(),
        Some(events),
        "{summary}"
    );
    assert_eq!(summary["delivered"], 0);
}

#[test]
fn tls_with_the_brokers_own_ca() {
    let shared = require_shared!();
    if !have_mosquitto(module_path!()) {
        return;
    }
    let Some(openssl) = which("openssl") else {
        lookout_testdata::missing(module_path!(), "openssl is not installed");
        return;
    };
    let bundle = bundle(&shared);
    let tmp = tempfile::tempdir().expect("temp dir");
    let pki = tmp.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki folder");
    let sh = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(&pki)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A home broker's own CA, and a server certificate it signed for localhost.
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Home CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    sh(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    let broker = Broker::start(
        tmp.path(),
        &format!(
            "allow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key",
            pki.display()
        ),
    );
    let camera = tmp.path().join("camera");
    lookout_e2e::copy_into(&camera, &photos(&shared, "Cat")[300..305]);
    let address = format!("mqtts://localhost:{}/lookout/tls", broker.port);
    let watch = |flush: &str, extra: &[&str]| {
        watch_command(bundle, &camera, &["--json", "--fps", "10", "--smooth", "2"])
            .args(["--mqtt", &address, "--mqtt-flush-timeout", flush])
            .args(extra)
            .output()
            .expect("watch")
    };

    let ca = pki.join("ca.pem");
    let out = watch("10", &["--mqtt-ca", ca.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("mqtt:"), "{stderr}");
    let summary = mqtt_summary(&json_lines(&out.stdout));
    assert!(summary["delivered"].as_u64() >= Some(1), "{summary}");
    assert_eq!(summary["undelivered"], 0, "{summary}");
    let kept = retained(
        broker.port,
        &["lookout/tls/#"],
        &["--cafile", ca.to_str().expect("utf-8 path")],
    );
    assert!(
        kept.iter().any(|m| m.topic == "lookout/tls/label/cat"),
        "{kept:?}"
    );

    // Without the CA, the system's roots do not know this broker's certificate: the link says so once (or,
    // on a machine with no system certificates at all, watch refuses to start and names --mqtt-ca).
    let out = watch("0.5", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let reports: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mqtt:")).collect();
        assert_eq!(reports.len(), 1, "{stderr}");
        assert!(
            reports[0].contains("cannot reach the broker")
                && reports[0].to_lowercase().contains("certificate"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("--mqtt-ca"), "{stderr}");
    }
}

//! `lookout-edge watch` through the built binary: folder and MJPEG sources, events, dropping, serial, signals.

mod common;

use common::{json_lines, of_type, s};

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lookout_edge::smoothing::{EventTrigger, Smoother, Trigger};
use lookout_edge::{Model, Prediction, RuntimeOptions};
use serde_json::Value;

fn watch(args: &[&str]) -> Output {
    Command::new(common::bin())
        .arg("watch")
        .args(args)
        .output()
        .expect("running lookout-edge watch")
}

/// A folder of photos named so that sorted order is the given order: `cats` cat photos, then `dogs` dog photos.
fn cats_then_dogs(shared: &Path, cats: usize, dogs: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    let photos = common::photos(shared, "Cat", cats)
        .into_iter()
        .chain(common::photos(shared, "Dog", dogs));
    for (i, photo) in photos.enumerate() {
        let dest = dir.path().join(format!("{i:03}.jpg"));
        std::fs::copy(&photo, &dest).expect("copy photo");
        files.push(dest);
    }
    (dir, files)
}

fn predictions(
    model_path: &Path,
    images: impl IntoIterator<Item = image::RgbImage>,
) -> (Vec<String>, Vec<Prediction>) {
    let mut model = Model::load(model_path, &RuntimeOptions::default()).expect("load");
    let preds = images
        .into_iter()
        .map(|img| model.classify(&img).expect("classify"))
        .collect();
    (model.labels().to_vec(), preds)
}

#[test]
fn folder_source_prints_right_frames_and_events_and_runs_exec() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let (dir, files) = cats_then_dogs(&shared, 6, 6);
    let exec_log = dir.path().join("events.log");
    let exec = format!(
        "echo \"$LOOKOUT_LABEL $LOOKOUT_FRAME\" >> {}",
        exec_log.display()
    );
    let source = format!("dir:{}", dir.path().display());
    let out = watch(&[
        "--model",
        s(&bundles.sigmoid),
        "--source",
        &source,
        "--fps",
        "0",
        "--no-drop",
        "--json",
        "--smooth",
        "3",
        "--threshold",
        "0.8",
        "--hysteresis",
        "0.1",
        "--exec",
        &exec,
        "--exec-interval",
        "0",
    ]);
    let lines = json_lines(&out);

    // Frames: one per photo, in order, with the library's label and score.
    let images = files
        .iter()
        .map(|f| lookout_shared::image_io::decode_file(f).expect("decode"));
    let (labels, expected) = predictions(&bundles.sigmoid, images);
    let frames = of_type(&lines, "frame");
    assert_eq!(frames.len(), files.len());
    for (i, (frame, p)) in frames.iter().zip(&expected).enumerate() {
        assert_eq!(frame["frame"], i as u64 + 1);
        assert_eq!(frame["label"], labels[p.label].as_str());
        assert!((frame["score"].as_f64().expect("score") - f64::from(p.score)).abs() < 1e-5);
        assert!(frame["latency_ms"].as_f64().expect("latency") > 0.0);
    }

    // Events: what smoothing + hysteresis over those predictions gives, frame for frame.
    let mut smoother = Smoother::new(3);
    let mut trigger = EventTrigger::new(2, 0.8, 0.1);
    let mut want = Vec::new();
    for (i, p) in expected.iter().enumerate() {
        let smoothed = smoother.push(&p.probabilities);
        if smoother.is_full() {
            for change in trigger.update(&smoothed) {
                want.push(match change {
                    Trigger::Fired { label, .. } => ("event", labels[label].clone(), i as u64 + 1),
                    Trigger::Cleared { label, .. } => {
                        ("clear", labels[label].clone(), i as u64 + 1)
                    }
                });
            }
        }
    }
    let got: Vec<(&str, String, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "event" || l["type"] == "clear")
        .map(|l| {
            let kind = if l["type"] == "event" {
                "event"
            } else {
                "clear"
            };
            (
                kind,
                l["label"].as_str().expect("label").to_string(),
                l["frame"].as_u64().expect("frame"),
            )
        })
        .collect();
    assert_eq!(got, want);
    // The photos are clear enough that a cat event comes first and a dog event later.
    let fired: Vec<&str> = got
        .iter()
        .filter(|e| e.0 == "event")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(fired.first(), Some(&"cat"), "{got:?}");
    assert!(fired.contains(&"dog"), "{got:?}");

    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["frames"], files.len());
    assert_eq!(summary["dropped"], 0);
    assert_eq!(summary["events"], fired.len());

    // --exec ran once per event (interval 0), with the label in its environment; it runs detached, so wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = std::fs::read_to_string(&exec_log).unwrap_or_default();
        if log.lines().count() >= fired.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut logged: Vec<&str> = log.lines().collect();
    logged.sort();
    let mut want_logged: Vec<String> = got
        .iter()
        .filter(|e| e.0 == "event")
        .map(|e| format!("{} {}", e.1, e.2))
        .collect();
    want_logged.sort();
    assert_eq!(logged, want_logged);
}

#[test]
fn a_slow_model_drops_stale_frames_instead_of_queueing_them() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let dir = shared.join("data/imagenet-sample");
    let source = format!("dir:{}", dir.display());
    // 500 frames/s offered, ≈ 30+ ms per classification: most frames must be dropped.
    let out = watch(&[
        "--model",
        s(&bundles.softmax),
        "--source",
        &source,
        "--fps",
        "500",
        "--loop",
        "--json",
        "--max-frames",
        "12",
    ]);
    let lines = json_lines(&out);
    let frames = of_type(&lines, "frame");
    assert_eq!(frames.len(), 12);
    let summary = of_type(&lines, "summary")[0];
    let captured = summary["captured"].as_u64().expect("captured");
    let dropped = summary["dropped"].as_u64().expect("dropped");
    assert!(dropped > 0, "{summary}");
    // Every captured frame was classified, dropped, or still in flight when --max-frames stopped the run.
    assert!(
        12 + dropped <= captured && captured <= 12 + dropped + 2,
        "{summary}"
    );
    // Frame numbers jump over the dropped frames.
    let numbers: Vec<u64> = frames
        .iter()
        .map(|f| f["frame"].as_u64().expect("frame"))
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] > w[0]), "{numbers:?}");
    assert!(
        numbers.last().expect("frames") - numbers[0] > 11,
        "{numbers:?}"
    );
    // Each frame inference starts on is the newest one (1 allows for the capture thread's counter racing
    // the slot): with a queue this would grow with every frame.
    for f in &frames {
        assert!(f["newer_at_start"].as_u64().expect("newer") <= 1, "{f}");
    }
    assert!(summary["latency_ms"]["p99"].as_f64().expect("p99") > 0.0);
}

/// Concatenated re-encoded JPEGs, as `rpicam-vid --codec mjpeg -o -` writes them.
fn mjpeg_stream(photos: &[PathBuf]) -> (Vec<u8>, Vec<image::RgbImage>) {
    let mut stream = Vec::new();
    let mut decoded = Vec::new();
    for photo in photos {
        let img = lookout_shared::image_io::decode_file(photo).expect("decode");
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
            .encode_image(&img)
            .expect("encode");
        decoded.push(
            lookout_shared::image_io::decode_bytes(&jpeg, Path::new("frame.jpg"))
                .expect("decode frame"),
        );
        stream.extend_from_slice(&jpeg);
    }
    (stream, decoded)
}

#[test]
fn mjpeg_file_source_splits_a_real_stream() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let photos: Vec<PathBuf> = common::photos(&shared, "Cat", 3)
        .into_iter()
        .chain(common::photos(&shared, "Dog", 3))
        .collect();
    let (stream, decoded) = mjpeg_stream(&photos);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("stream.mjpg");
    std::fs::write(&file, &stream).expect("write stream");
    let source = format!("mjpeg:{}", file.display());
    let out = watch(&[
        "--model",
        s(&bundles.sigmoid),
        "--source",
        &source,
        "--fps",
        "0",
        "--no-drop",
        "--json",
        "--smooth",
        "1",
    ]);
    let lines = json_lines(&out);
    let (labels, expected) = predictions(&bundles.sigmoid, decoded);
    let frames = of_type(&lines, "frame");
    assert_eq!(frames.len(), photos.len());
    for (frame, p) in frames.iter().zip(&expected) {
        assert_eq!(frame["label"], labels[p.label].as_str());
        assert!((frame["score"].as_f64().expect("score") - f64::from(p.score)).abs() < 1e-5);
    }
}

#[test]
fn mjpeg_on_stdin_with_garbage_between_frames() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let photos = common::photos(&shared, "Cat", 3);
    let (stream, _) = mjpeg_stream(&photos);
    let mut child = Command::new(common::bin())
        .args([
            "watch",
            "--model",
            s(&bundles.sigmoid),
            "--source",
            "mjpeg:-",
            "--json",
            "--no-drop",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"\x00\xffjunk").expect("write");
        stdin.write_all(&stream).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let lines = json_lines(&out);
    assert_eq!(of_type(&lines, "frame").len(), 3, "{lines:?}");
}

#[test]
fn serial_output_through_a_pseudo_terminal_decodes_to_the_printed_detections() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let (dir, files) = cats_then_dogs(&shared, 3, 3);
    let (mut master, slave) = serialport::TTYPort::pair().expect("opening a pty pair");
    let slave_path = serialport::SerialPort::name(&slave).expect("pty name");
    // Read everything the binary writes, on a thread, until the binary is done.
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        serialport::SerialPort::set_timeout(&mut master, Duration::from_millis(200))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut idle_after_data = 0;
        while Instant::now() < deadline && idle_after_data < 10 {
            match master.read(&mut buf) {
                Ok(0) => idle_after_data += 1,
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    idle_after_data = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if !bytes.is_empty() {
                        idle_after_data += 1;
                    }
                }
                Err(e) => panic!("reading the pty master: {e}"),
            }
        }
        bytes
    });
    let source = format!("dir:{}", dir.path().display());
    let out = watch(&[
        "--model",
        s(&bundles.sigmoid),
        "--source",
        &source,
        "--fps",
        "0",
        "--no-drop",
        "--json",
        "--smooth",
        "1",
        "--serial",
        &slave_path,
        "--baud",
        "115200",
        "--serial-frames",
    ]);
    let lines = json_lines(&out);
    let bytes = reader.join().expect("reader thread");
    drop(slave);
    let detections = decode_detections(&bytes);
    let frames = of_type(&lines, "frame");
    assert_eq!(frames.len(), files.len());
    assert_eq!(detections.len(), frames.len(), "{} bytes read", bytes.len());
    for (d, f) in detections.iter().zip(&frames) {
        assert_eq!(d.frame, f["frame"].as_u64().expect("frame"));
        assert_eq!(
            u64::from(d.label),
            f["label_index"].as_u64().expect("label")
        );
        assert!((f64::from(d.score) - f["score"].as_f64().expect("score")).abs() < 1e-6);
        assert!(d.latency_us > 0);
    }
    assert_eq!(of_type(&lines, "summary")[0]["serial_sent"], frames.len());
}

fn decode_detections(bytes: &[u8]) -> Vec<lookout_shared::Detection> {
    let mut reader = lookout_shared::detection::FrameReader::new();
    let mut out = Vec::new();
    for &byte in bytes {
        if let Some(result) = reader.push(byte) {
            out.push(result.expect("a valid Detection frame"));
        }
    }
    out
}

/// Spawns watch, waits for `frames` frame lines on stdout, sends SIGTERM, returns (exit code, stdout lines, stderr).
fn terminate_after(
    args: &[&str],
    frames: usize,
    wait_before_kill: Duration,
) -> (Option<i32>, Vec<Value>, String) {
    let mut child = Command::new(common::bin())
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    let mut seen = 0;
    while seen < frames {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read") == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        seen += usize::from(v["type"] == "frame");
        lines.push(v);
    }
    std::thread::sleep(wait_before_kill);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read rest");
    lines.extend(
        rest.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON line")),
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let code = child.wait().expect("wait").code();
    (code, lines, stderr)
}

#[test]
fn sigterm_ends_an_endless_stream_cleanly_with_a_summary() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let (dir, _) = cats_then_dogs(&shared, 2, 2);
    let source = format!("dir:{}", dir.path().display());
    let (code, lines, stderr) = terminate_after(
        &[
            "--model",
            s(&bundles.sigmoid),
            "--source",
            &source,
            "--loop",
            "--fps",
            "20",
            "--json",
        ],
        3,
        Duration::ZERO,
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    let summary = lines.last().expect("lines");
    assert_eq!(summary["type"], "summary", "{lines:?}");
    assert!(
        summary["frames"].as_u64().expect("frames") >= 3,
        "{summary}"
    );
}

#[test]
fn a_missing_camera_is_reported_once_and_retried_until_stopped() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let (code, lines, stderr) = terminate_after(
        &[
            "--model",
            s(&bundles.sigmoid),
            "--source",
            "v4l2:/dev/video-lookout-missing",
            "--json",
        ],
        0,
        Duration::from_millis(2500),
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    // Several retries happened in 2.5 s (backoff 0.5 s, 1 s, …) but the problem is printed once.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/dev/video-lookout-missing") && stderr.contains("retrying"),
        "{stderr}"
    );
    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["frames"], 0);
}

#[test]
fn bad_watch_arguments_exit_2() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    for args in [
        vec!["--model", s(&bundles.sigmoid), "--source", "rtmp://camera"],
        vec![
            "--model",
            s(&bundles.sigmoid),
            "--source",
            "rtsp://admin:secret@camera/stream1",
        ],
        vec![
            "--model",
            s(&bundles.sigmoid),
            "--source",
            "dir:/nonexistent",
        ],
        vec![
            "--model",
            s(&bundles.sigmoid),
            "--source",
            "mjpeg:-",
            "--gpio",
            "0:17",
        ],
        vec![
            "--model",
            s(&bundles.sigmoid),
            "--source",
            "mjpeg:-",
            "--when",
            "horse",
        ],
    ] {
        let out = watch(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{args:?}"
        );
    }
}

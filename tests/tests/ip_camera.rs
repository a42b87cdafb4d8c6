//! IP cameras: `watch --source http://…` reads an MJPEG stream (Lookout's own preview stream stands in for the
//! camera) and reconnects when the camera is killed and comes back; a snapshot URL behind a password is polled,
//! the password taken from the environment and never printed; `watch --source rtsp://…` reads a real RTSP
//! server (GStreamer's, `tests/fixtures/rtsp_camera.py`) behind a password, through ffmpeg, and reconnects.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::Engine;
use lookout_e2e::{command, copy_into, fit_small_lite0, free_port, photos, require_shared, which};
use serde_json::Value;

/// A running process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `watch --preview ADDR` over a folder: a camera that serves `/stream.mjpg`.
fn camera(bundle: &Path, frames: &Path, port: u16) -> Running {
    let child = command("lookout-edge")
        .args(["watch", "--loop", "--fps", "10", "--model"])
        .arg(bundle)
        .arg("--source")
        .arg(format!("dir:{}", frames.display()))
        .args(["--preview", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the camera");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the camera's preview never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Running(child)
}

/// `watch --json --source URL`: its stdout lines and stderr lines, each on a channel.
fn reader(
    bundle: &Path,
    url: &str,
    env: &[(&str, &str)],
) -> (Running, mpsc::Receiver<Value>, mpsc::Receiver<String>) {
    let mut child = command("lookout-edge")
        .args(["watch", "--json", "--fps", "10", "--model"])
        .arg(bundle)
        .args(["--source", url])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");
    let (out_send, out) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if out_send.send(value).is_err() {
                return;
            }
        }
    });
    let (err_send, err) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if err_send.send(line).is_err() {
                return;
            }
        }
    });
    (Running(child), out, err)
}

/// Waits for `n` frame lines; panics after 60 s.
fn frames(lines: &mpsc::Receiver<Value>, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {} frames in 60 s", got.len()));
        match line["type"].as_str() {
            Some("frame") => got.push(line),
            Some("error") => panic!("a frame failed: {line}"),
            _ => {}
        }
    }
    got
}

/// Stops `watch` with SIGTERM: its summary counts the time without the camera (down for 2 s, plus the
/// restart).
fn assert_camera_away_counted(watch: &Running, lines: &mpsc::Receiver<Value>) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &watch.0.id().to_string()])
        .status();
    let summary = (0..)
        .map_while(|_| lines.recv_timeout(Duration::from_secs(30)).ok())
        .find(|l| l["type"] == "summary")
        .expect("a summary after SIGTERM");
    let away = summary["camera_away_s"].as_f64().expect("camera_away_s");
    assert!((1.5..30.0).contains(&away), "{summary}");
}

#[test]
fn an_mjpeg_stream_is_read_and_read_again_after_the_camera_restarts() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    let frames_dir = tmp.path().join("frames");
    copy_into(&frames_dir, &photos(&shared, "Cat")[300..306]);
    let port = free_port();
    let first = camera(&bundle, &frames_dir, port);
    let url = format!("http://127.0.0.1:{port}/stream.mjpg");
    let (watch, lines, status) = reader(&bundle, &url, &[]);
    let seen = frames(&lines, 5);
    assert!(seen
        .iter()
        .all(|f| ["Cat", "Dog"].contains(&f["label"].as_str().unwrap_or(""))));

    // The camera dies and comes back on the same address: one line says so, frames flow again.
    drop(first);
    std::thread::sleep(Duration::from_secs(2));
    let _second = camera(&bundle, &frames_dir, port);
    frames(&lines, 5);
    let said: Vec<String> = status.try_iter().collect();
    let lost = said.iter().filter(|l| l.contains("reconnecting")).count();
    assert_eq!(lost, 1, "one line per outage: {said:?}");
    assert!(said.iter().any(|l| l.contains("back after")), "{said:?}");
    assert_camera_away_counted(&watch, &lines);
}

#[test]
fn a_snapshot_url_behind_a_password_is_polled_and_the_password_never_shown() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    let jpeg = std::fs::read(&photos(&shared, "Dog")[300]).expect("photo");
    // A snapshot camera: one JPEG per GET, only with the right credentials.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let expected = format!(
        "authorization: basic {}",
        base64::engine::general_purpose::STANDARD.encode("viewer:s3cret-pass")
    )
    .to_ascii_lowercase();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let response = if head.lines().any(|l| l.trim() == expected) {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    jpeg.len()
                )
                .into_bytes();
                r.extend_from_slice(&jpeg);
                r
            } else {
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    let url = format!("http://viewer@127.0.0.1:{port}/snapshot.jpg");

    // The wrong password: refused by the camera, said once, retried.
    let (wrong, _, status) = reader(&bundle, &url, &[("LOOKOUT_SOURCE_PASSWORD", "wrong")]);
    std::thread::sleep(Duration::from_secs(3));
    drop(wrong);
    let said: Vec<String> = status.try_iter().collect();
    assert_eq!(
        said.iter()
            .filter(|l| l.contains("refused the credentials"))
            .count(),
        1,
        "{said:?}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);

    let (_watch, lines, status) =
        reader(&bundle, &url, &[("LOOKOUT_SOURCE_PASSWORD", "s3cret-pass")]);
    let seen = frames(&lines, 6);
    assert!(
        seen.iter().all(|f| f["label"] == seen[0]["label"]),
        "one photo, one label"
    );
    assert!(served.load(Ordering::SeqCst) >= 6);
    let said: Vec<String> = status.try_iter().collect();
    assert!(said.iter().all(|l| !l.contains("s3cret")), "{said:?}");
    // The address is shown without the user either way, and with a password in it, refused at start.
    let out = command("lookout-edge")
        .args(["watch", "--model"])
        .arg(&bundle)
        .args([
            "--source",
            &format!("http://viewer:s3cret-pass@127.0.0.1:{port}/snapshot.jpg"),
        ])
        .output()
        .expect("run watch");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a password in the address"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// Whether GStreamer's RTSP server (through Debian's python3-gi) and ffmpeg are here; under CI their absence
/// fails the test.
fn have_rtsp(test: &str) -> bool {
    let server = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let found = server && which("ffmpeg").is_some();
    if !found {
        lookout_testdata::missing(
            test,
            "ffmpeg or GStreamer's RTSP server is not installed (apt-get install ffmpeg python3-gi \
             gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good; .ci/run does)",
        );
    }
    found
}

/// An RTSP camera serving the JPEGs of `frames` (named 0000.jpg, …) at `rtsp://127.0.0.1:PORT/camera`, with
/// Basic authentication for `login`.
fn rtsp_camera(frames: &Path, port: u16, login: (&str, &str)) -> Running {
    let script =
        lookout_testdata::crate_dir(env!("CARGO_MANIFEST_DIR")).join("fixtures/rtsp_camera.py");
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .arg(frames)
        .args([login.0, login.1])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the RTSP camera");
    let mut ready = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let _ = stdout.read_line(&mut ready);
    assert_eq!(ready.trim(), "ready", "the RTSP camera did not start");
    Running(child)
}

/// The ffmpeg processes whose parent is `parent` (from /proc).
fn ffmpeg_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `PID (comm) STATE PPID …`: the name may hold spaces, so read after its closing parenthesis.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let name = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "));
            name.is_some_and(|(comm, rest)| {
                comm == "ffmpeg" && rest.split(' ').nth(1) == Some(&parent.to_string())
            })
        })
        .collect()
}

/// Waits up to `within` for `pid` to be gone (no process, or a zombie awaiting its reaper).
fn ends(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        if state.is_none_or(|s| s == 'Z') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn an_rtsp_camera_behind_a_password_is_read_through_ffmpeg_and_again_after_it_restarts() {
    let shared = require_shared!();
    if !have_rtsp("an_rtsp_camera") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    let frames_dir = tmp.path().join("frames");
    std::fs::create_dir(&frames_dir).expect("frames folder");
    let (cats, dogs) = (photos(&shared, "Cat"), photos(&shared, "Dog"));
    for (i, photo) in cats[300..303].iter().chain(&dogs[300..303]).enumerate() {
        std::fs::copy(photo, frames_dir.join(format!("{i:04}.jpg"))).expect("copy photo");
    }
    // Characters that must be percent-encoded in the address ffmpeg gets.
    let (user, password) = ("viewer", "p@ss w:rd/%");
    let port = free_port();
    let first = rtsp_camera(&frames_dir, port, (user, password));
    let url = format!("rtsp://{user}@127.0.0.1:{port}/camera");

    // The wrong password: the camera's 401 is said once (without the password), and retried.
    let (wrong, _, status) = reader(&bundle, &url, &[("LOOKOUT_SOURCE_PASSWORD", "wr0ng-pass")]);
    // The first refusal (watch loads its model first: slow on a loaded machine), then 3 s of retries.
    let mut said: Vec<String> = status
        .recv_timeout(Duration::from_secs(60))
        .into_iter()
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    drop(wrong);
    said.extend(status.try_iter());
    let refused: Vec<&String> = said.iter().filter(|l| l.contains("reconnecting")).collect();
    assert_eq!(refused.len(), 1, "{said:?}");
    assert!(refused[0].contains("401"), "{said:?}");
    assert!(said.iter().all(|l| !l.contains("wr0ng")), "{said:?}");

    let (watch, lines, status) = reader(&bundle, &url, &[("LOOKOUT_SOURCE_PASSWORD", password)]);
    let seen = frames(&lines, 20);
    let labels: std::collections::BTreeSet<&str> =
        seen.iter().filter_map(|f| f["label"].as_str()).collect();
    assert_eq!(
        labels,
        ["Cat", "Dog"].into(),
        "the loop of 3 cats and 3 dogs"
    );

    // The camera dies and comes back on the same address: one line says so, frames flow again.
    drop(first);
    std::thread::sleep(Duration::from_secs(2));
    let second = rtsp_camera(&frames_dir, port, (user, password));
    frames(&lines, 5);
    let said: Vec<String> = status.try_iter().collect();
    assert_eq!(
        said.iter().filter(|l| l.contains("reconnecting")).count(),
        1,
        "one line per outage: {said:?}"
    );
    assert!(said.iter().any(|l| l.contains("back after")), "{said:?}");
    // One ffmpeg per camera, and none left once watch ends: stopped by a signal, or killed outright.
    let children = ffmpeg_children(watch.0.id());
    assert_eq!(children.len(), 1, "{children:?}");
    assert_camera_away_counted(&watch, &lines);
    let said: Vec<String> = status.try_iter().collect();
    assert!(said.iter().all(|l| !l.contains("p@ss")), "{said:?}");
    assert!(
        ends(children[0], Duration::from_secs(10)),
        "ffmpeg {} outlived watch (SIGTERM)",
        children[0]
    );

    let (mut killed, lines, _) = reader(&bundle, &url, &[("LOOKOUT_SOURCE_PASSWORD", password)]);
    frames(&lines, 2);
    let children = ffmpeg_children(killed.0.id());
    assert_eq!(children.len(), 1, "{children:?}");
    // The camera freezes (its connection open, no more frames): ffmpeg waits on it and writes nothing, so
    // only the kernel's death signal ends it with watch, well before ffmpeg's own 10 s timeout.
    let signal = |name: &str, pid: u32| {
        let _ = std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status();
    };
    signal("-STOP", second.0.id());
    std::thread::sleep(Duration::from_millis(500));
    killed.0.kill().expect("kill -9 watch");
    let _ = killed.0.wait();
    let gone = ends(children[0], Duration::from_secs(3));
    signal("-CONT", second.0.id());
    assert!(gone, "ffmpeg {} outlived watch (SIGKILL)", children[0]);
}

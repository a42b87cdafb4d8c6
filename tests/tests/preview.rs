//! `watch --preview`: the live page as a person sees it (headless Chromium), the MJPEG stream as a client reads
//! it, and the token on a non-loopback address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lookout_e2e::browser::Browser;
use lookout_e2e::scene::{scene, write_frames, NightMode, BOWL};
use lookout_e2e::{command, copy_into, fit_small_lite0, free_port, photos, require_shared, run_ok};
use lookout_shared::Region;

/// A running `watch` that loops over a folder of cats with a preview; killed when dropped.
struct Watching {
    child: Child,
    url: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn watch_with_preview(bundle: &Path, camera: &Path, preview: &str, extra: &[&str]) -> Watching {
    let mut child = command("lookout-edge")
        .args(["watch", "--json", "--loop", "--fps", "8", "--model"])
        .arg(bundle)
        .arg("--source")
        .arg(format!("dir:{}", camera.display()))
        .args(["--preview", preview])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("preview: ") => {
                break line["preview: ".len()..].to_string();
            }
            Some(Ok(_)) => continue,
            _ => panic!("watch ended without printing the preview's address"),
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Watching { child, url }
}

/// A bare HTTP/1.1 GET: the status code and the first `limit` bytes of the body.
fn get(host_port: &str, path: &str, limit: usize) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(host_port).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    let mut chunk = [0u8; 16384];
    while response.len() < limit {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
        }
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let body = &response[head_end + 4..];
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        },
    )
}

/// The payload of a chunked body (as far as it was read).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..line_end]);
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || start + size > body.len() {
            out.extend_from_slice(&body[start.min(body.len())..(start + size).min(body.len())]);
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

/// The JPEGs of an MJPEG body (each part's Content-Length bytes).
fn jpeg_parts(body: &[u8]) -> Vec<Vec<u8>> {
    let text_at =
        |at: usize| String::from_utf8_lossy(&body[at..(at + 200).min(body.len())]).into_owned();
    let mut parts = Vec::new();
    let mut at = 0;
    while let Some(offset) = body[at..].windows(15).position(|w| w == b"Content-Length:") {
        let start = at + offset;
        let header = text_at(start);
        let Some(len) = header
            .lines()
            .next()
            .and_then(|l| l["Content-Length:".len()..].trim().parse::<usize>().ok())
        else {
            break;
        };
        let Some(data) = body[start..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let data = start + data + 4;
        if data + len > body.len() {
            break;
        }
        parts.push(body[data..data + len].to_vec());
        at = data + len;
    }
    parts
}

fn wait_until_classifying(host_port: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = get(host_port, "/status.json", 1 << 20);
        assert_eq!(status, 200);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("status JSON");
        if value["frame"].as_u64().unwrap_or(0) > 2 {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no frame classified: {value}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_preview_page_stream_and_token_work_as_a_viewer_sees_them() {
    let shared = require_shared!();
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    let camera = tmp.path().join("camera");
    copy_into(&camera, &photos(&shared, "Cat")[300..306]);

    // Loopback: no token asked.
    let host_port = format!("127.0.0.1:{}", free_port());
    let watching = watch_with_preview(&bundle, &camera, &host_port, &[]);
    assert_eq!(watching.url, format!("http://{host_port}/"));
    assert_eq!(get(&host_port, "/healthz", 100), (200, b"ok\n".to_vec()));
    let status = wait_until_classifying(&host_port);
    assert!(
        ["Cat", "Dog"].contains(&status["label"].as_str().unwrap_or("")),
        "{status}"
    );
    assert!(
        status["score"].as_f64().is_some_and(|s| s >= 0.5),
        "{status}"
    );
    assert_eq!(get(&host_port, "/../etc/passwd", 1000).0, 404);
    assert_eq!(get(&host_port, "/assets/", 1000).0, 404);

    // The stream: two whole JPEGs, each decodable, each byte for byte a photo of the camera folder.
    let (status_code, body) = get(&host_port, "/stream.mjpg", 3 << 20);
    assert_eq!(status_code, 200);
    let parts = jpeg_parts(&body);
    assert!(
        parts.len() >= 2,
        "{} parts in {} bytes",
        parts.len(),
        body.len()
    );
    let originals: Vec<Vec<u8>> = std::fs::read_dir(&camera)
        .expect("camera")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("photo"))
        .collect();
    for part in &parts[..2] {
        image::load_from_memory(part).expect("a decodable JPEG");
        assert!(originals.contains(part), "a frame was re-encoded");
    }

    // A person's view: headless Chromium renders the page, the label and the frame.
    match lookout_e2e::which("chromium") {
        Some(chromium) => {
            let shot = tmp.path().join("preview.png");
            let rendered = run_ok(
                std::process::Command::new(&chromium)
                    .args([
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--hide-scrollbars",
                        "--window-size=1000,700",
                        "--virtual-time-budget=4000",
                        "--dump-dom",
                    ])
                    .arg(format!("--screenshot={}", shot.display()))
                    .arg(&watching.url),
            );
            let dom = String::from_utf8_lossy(&rendered.stdout);
            // The label line, filled in by the page's script from /status.json: a label of the model.
            assert!(
                [
                    r#"<p id="label" class="">Cat</p>"#,
                    r#"<p id="label" class="">Dog</p>"#,
                    r#"<p id="label" class="unknown">unknown</p>"#,
                ]
                .iter()
                .any(|line| dom.contains(line)),
                "{dom}"
            );
            assert!(dom.contains(" fps · latency "), "no live figures: {dom}");
            let picture = image::open(&shot).expect("a screenshot").to_rgb8();
            // The frame (a photo, not a flat box) fills the left of the page.
            let pixels: Vec<f64> = picture
                .enumerate_pixels()
                .filter(|(x, y, _)| *x > 40 && *x < 600 && *y > 40 && *y < 400)
                .map(|(_, _, p)| p.0.iter().map(|&v| v as f64).sum::<f64>() / 3.0)
                .collect();
            let mean = pixels.iter().sum::<f64>() / pixels.len() as f64;
            let spread = (pixels.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / pixels.len() as f64)
                .sqrt();
            assert!(
                spread > 20.0,
                "the frame area is flat (std {spread:.1}): no photo drawn"
            );
        }
        None => lookout_testdata::missing(
            "the_preview_page_stream_and_token_work_as_a_viewer_sees_them",
            "chromium (apt-get install chromium)",
        ),
    }
    drop(watching);

    // Any other address: the token, or 401.
    let port = free_port();
    let watching = watch_with_preview(&bundle, &camera, &format!("0.0.0.0:{port}"), &[]);
    let host_port = format!("127.0.0.1:{port}");
    let token = watching
        .url
        .split_once("?token=")
        .map(|(_, t)| t.to_string())
        .expect("a generated token in the address");
    assert_eq!(token.len(), 32, "128 random bits: {token}");
    assert_eq!(get(&host_port, "/status.json", 1000).0, 401);
    assert_eq!(get(&host_port, "/stream.mjpg", 1000).0, 401);
    assert_eq!(get(&host_port, "/?token=wrong", 1000).0, 401);
    assert_eq!(get(&host_port, &format!("/?token={token}"), 1 << 20).0, 200);
    assert_eq!(
        get(&host_port, &format!("/status.json?token={token}"), 1 << 20).0,
        200
    );
}

/// Pixels of `picture` within 24 of `colour` on every channel.
fn pixels_near(picture: &image::RgbImage, colour: [u8; 3]) -> usize {
    picture
        .pixels()
        .filter(|p| (0..3).all(|c| p.0[c].abs_diff(colour[c]) <= 24))
        .count()
}

#[test]
fn zones_are_drawn_on_the_live_image_and_a_drag_gives_the_flag_to_paste() {
    let shared = require_shared!();
    let Some(chromium) = lookout_e2e::which("chromium") else {
        return lookout_testdata::missing(
            "zones_are_drawn_on_the_live_image_and_a_drag_gives_the_flag_to_paste",
            "chromium (apt-get install chromium)",
        );
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    // The fixed camera of the scene test: a porch at night, a cat at the bowl.
    let camera = tmp.path().join("camera");
    let cats = photos(&shared, "Cat");
    write_frames(
        &camera,
        NightMode::Colour,
        "f",
        &scene(&shared),
        &cats[..3],
        "cat",
        6,
        7,
    );
    let host_port = format!("127.0.0.1:{}", free_port());
    let bowl = format!("bowl={BOWL}");
    let watching = watch_with_preview(
        &bundle,
        &camera,
        &host_port,
        &["--zone", &bowl, "--zone", "step=0,0.75,0.3,0.25"],
    );

    let mut browser = Browser::open(&chromium, &watching.url, (1100, 600));
    // Both zones listed beside the image with their answers, over a frame that has arrived.
    browser.wait_for(
        "document.querySelectorAll('#zonelist .zone').length === 2 \
         && document.getElementById('frame').naturalWidth > 0",
        Duration::from_secs(60),
    );
    let listed = browser.eval(
        "[...document.querySelectorAll('#zonelist .zone b')].map(b => b.textContent).join(',')",
    );
    assert_eq!(listed, "bowl,step");

    // A person drags out a rectangle on the image: the page shows the flag that names it, in fractions of
    // the frame (the image as laid out, not the canvas drawn over it).
    let rect = browser.eval(
        "(() => { const r = document.getElementById('frame').getBoundingClientRect(); \
         return [r.left, r.top, r.width, r.height]; })()",
    );
    let [left, top, width, height] =
        [0, 1, 2, 3].map(|i| rect[i].as_f64().expect("a rectangle of numbers"));
    assert!(
        width > 300.0 && height > 200.0,
        "the image is {width}x{height}"
    );
    let at = |x: f64, y: f64| (left + x * width, top + y * height);
    browser.drag(at(0.6, 0.1), at(0.9, 0.35));
    let flag = browser.eval("document.querySelector('#newzone code').textContent");
    let flag = flag.as_str().expect("a flag to paste");
    let region = flag
        .strip_prefix("--zone zone3=")
        .unwrap_or_else(|| panic!("not a --zone flag for a third zone: {flag}"));
    let region: Region = region
        .parse()
        .expect("the flag's region parses as --zone does");
    let expected = [0.6, 0.1, 0.3, 0.25];
    let got = [region.x, region.y, region.w, region.h];
    assert!(
        got.iter()
            .zip(expected)
            .all(|(g, e)| (f64::from(*g) - e).abs() < 0.01),
        "dragged {expected:?}, the flag says {flag}"
    );

    // What the person sees: the frame, the two zones outlined in the colour of their answer (a label or
    // unknown), the dragged rectangle in white.
    let png = browser.screenshot();
    if let Some(path) = std::env::var_os("LOOKOUT_PREVIEW_SCREENSHOT") {
        std::fs::write(&path, &png).expect("writing the screenshot");
    }
    let picture = image::load_from_memory(&png).expect("a PNG").to_rgb8();
    let outlined =
        pixels_near(&picture, [0x44, 0xaa, 0x99]) + pixels_near(&picture, [0xff, 0x99, 0x00]);
    // Two 2-pixel outlines around zones of about 400x260 and 300x120 CSS pixels: thousands of pixels.
    assert!(outlined > 1500, "{outlined} pixels in the zones' colours");
}

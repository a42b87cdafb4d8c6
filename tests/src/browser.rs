//! Headless Chromium driven over the DevTools protocol: what a person does on a page (a drag with the mouse)
//! and what they see (a screenshot). `chromium --dump-dom` renders a page but cannot touch it; the protocol is
//! one WebSocket of JSON calls (`Runtime.evaluate`, `Input.dispatchMouseEvent`, `Page.captureScreenshot`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// One headless Chromium with one page; the browser is killed when dropped.
pub struct Browser {
    // Declared first so the page's socket closes before the browser goes.
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    _chromium: Killed,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// A child process killed when dropped, so that a failing test leaves no browser behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts `chromium` headless with a `width`×`height` window and opens `url` in its page.
    pub fn open(chromium: &Path, url: &str, (width, height): (u32, u32)) -> Browser {
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let mut chromium = Killed(
            Command::new(chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--remote-debugging-port=0",
                ])
                .arg(format!("--window-size={width},{height}"))
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start chromium"),
        );
        // Chromium says where its protocol listens on stderr: `DevTools listening on ws://HOST:PORT/...`.
        let mut lines = BufReader::new(chromium.0.stderr.take().expect("stderr")).lines();
        let host_port = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("DevTools listening on ws://") {
                        break rest.split('/').next().unwrap_or_default().to_string();
                    }
                }
                _ => panic!("chromium ended without opening its DevTools port"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let list = http_get(&host_port, "/json/list");
        let targets: Value = serde_json::from_str(&list)
            .unwrap_or_else(|e| panic!("the DevTools target list is not JSON ({e}): {list}"));
        let page_url = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page among the DevTools targets: {targets}"))
            .to_string();
        let (page, _) = tungstenite::connect(page_url.as_str()).expect("connect to the page");
        if let MaybeTlsStream::Plain(stream) = page.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("read timeout");
        }
        let mut browser = Browser {
            page,
            _chromium: chromium,
            next_id: 0,
            _profile: profile,
        };
        // The window size leaves out the browser's own bars: set the page's viewport to exactly the size asked.
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser.call("Page.navigate", json!({ "url": url }));
        browser
    }

    /// Calls a protocol method and returns its result (events that arrive meanwhile are dropped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(request.to_string()))
            .expect("send to the browser");
        loop {
            let message = self.page.read().expect("an answer from the browser");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let answer: Value = serde_json::from_str(text).expect("JSON from the browser");
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method} failed: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression} threw: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page; panics after `limit`.
    pub fn wait_for(&mut self, expression: &str, limit: Duration) {
        let start = Instant::now();
        while self.eval(expression) != Value::Bool(true) {
            assert!(
                start.elapsed() < limit,
                "{expression} still false after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Presses the left button at `from` (CSS pixels of the page), moves to `to` in a few steps and releases.
    pub fn drag(&mut self, from: (f64, f64), to: (f64, f64)) {
        let mouse = |kind: &str, (x, y): (f64, f64), buttons: u32| json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1 });
        self.call("Input.dispatchMouseEvent", mouse("mousePressed", from, 1));
        for step in 1..=4 {
            let t = f64::from(step) / 4.0;
            let at = (from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t);
            self.call("Input.dispatchMouseEvent", mouse("mouseMoved", at, 1));
        }
        self.call("Input.dispatchMouseEvent", mouse("mouseReleased", to, 0));
    }

    /// What the page looks like now, as PNG bytes.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG")
    }
}

/// The body of a bare HTTP GET (DevTools keeps the connection open: the body is `Content-Length` bytes).
fn http_get(host_port: &str, path: &str) -> String {
    let stream = TcpStream::connect(host_port).expect("connect to DevTools");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(&stream, "GET {path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n").expect("request");
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a response header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a Content-Length");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the response body");
    String::from_utf8_lossy(&body).into_owned()
}

//! `watch --preview 127.0.0.1:8080`: what the camera sees and what the model says, in a browser.
//!
//! One self-contained page (`assets/preview.html`: no CDN, no framework; the Pi may be offline), the newest
//! frame as an MJPEG stream (`/stream.mjpg`, `multipart/x-mixed-replace`; a camera's JPEG is sent as captured,
//! not re-encoded), `/status.json` for scripts and `/healthz`.
//!
//! Zones (and a `--roi`) are drawn over the live image, each with its own answer; dragging out a rectangle on
//! the image shows the `--zone NAME=x,y,w,h` flag that names it, to paste into the next `watch` (all in the
//! page's script: placing a zone by eye is easier than guessing fractions). The empty scene (the bundle's
//! background label) is shown as "nothing", and gets no bar.
//!
//! It never slows the model down: the sink only swaps the newest frame into a shared slot (and only while
//! someone watches); each viewer has a thread of its own that sends whatever is newest when it is ready, so a
//! slow viewer skips frames and a stalled one blocks only itself. At most [`MAX_VIEWERS`] streams at once.
//!
//! Security: on a loopback address nothing is asked. On any other address a token is required (given with
//! `--preview-token`, or generated and printed at start, as Jupyter does): `?token=…` or
//! `Authorization: Bearer …`; without it, 401. Only the four paths exist; anything else is 404.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{FrameReport, LabelChange, Regions, SceneChange, Sink, WatchSummary};
use crate::smoothing::Smoother;
use crate::source::RawFrame;
use crate::stats::{ms, round3};

/// Streams served at once; more get 503.
pub const MAX_VIEWERS: usize = 4;
const PAGE: &str = include_str!("../../assets/preview.html");
const BOUNDARY: &str = "lookoutframe";
/// Events shown on the page.
const EVENTS_KEPT: usize = 10;

/// What the page shows, replaced by the sink at every frame.
#[derive(Default)]
struct Shown {
    /// Increases with every frame, so a viewer knows when there is a new one.
    generation: u64,
    frame: Option<Arc<RawFrame>>,
    /// The run is over: streams end.
    ended: bool,
    status: serde_json::Value,
    events: VecDeque<serde_json::Value>,
    /// The regions, for `/status.json` before the first frame.
    regions: serde_json::Value,
}

/// Shared between the sink (on the inference thread) and the viewers' threads.
struct Shared {
    shown: Mutex<Shown>,
    new_frame: Condvar,
    viewers: AtomicUsize,
    token: Option<String>,
}

/// The sink; the server runs on threads of its own from [`PreviewSink::start`] until the process ends.
pub struct PreviewSink {
    shared: Arc<Shared>,
    /// One per zone (one without zones), for the bars.
    smoothers: Vec<Smoother>,
    labels: Vec<String>,
    background: Option<usize>,
    regions: Regions,
    /// Each zone's last status, in order (with zones).
    zone_status: Vec<serde_json::Value>,
    /// The last frame copied for the viewers: a frame with zones is copied once.
    copied: u64,
}

/// What the page shows besides frames: the labels, which one is the empty scene, the smoothing, the zones.
#[derive(Debug, Clone)]
pub struct PreviewOptions {
    /// The model's labels.
    pub labels: Vec<String>,
    /// The background label (shown as "nothing", no bar).
    pub background: Option<usize>,
    /// The bars' smoothing window, in frames.
    pub smooth: usize,
    /// What of the frame is classified (drawn over the image).
    pub regions: Regions,
}

impl std::fmt::Debug for PreviewSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewSink").finish_non_exhaustive()
    }
}

/// Why the preview cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The address is not free (or not ours).
    #[error(
        "--preview {addr}: cannot listen there ({reason}); pick another port, or stop what uses it"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
    },
    /// No token could be generated.
    #[error("--preview {addr}: cannot generate a token ({0}); give one with --preview-token", addr = .1)]
    Token(std::io::Error, SocketAddr),
}

impl PreviewSink {
    /// Starts serving on `addr`. A non-loopback `addr` without `token` gets a generated one. Returns the sink
    /// and the URL to open (with the token when one is needed).
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        options: PreviewOptions,
    ) -> Result<(Self, String), PreviewError> {
        let token = match (token, addr.ip().is_loopback()) {
            (Some(token), _) => Some(token),
            (None, true) => None,
            (None, false) => Some(generate_token().map_err(|e| PreviewError::Token(e, addr))?),
        };
        let server = tiny_http::Server::http(addr).map_err(|e| PreviewError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        let local = server.server_addr().to_ip().unwrap_or(addr);
        let url = match &token {
            Some(token) => format!("http://{local}/?token={token}"),
            None => format!("http://{local}/"),
        };
        let shared = Arc::new(Shared {
            shown: Mutex::new(Shown {
                regions: regions_json(&options.regions, &[]),
                ..Shown::default()
            }),
            new_frame: Condvar::new(),
            viewers: AtomicUsize::new(0),
            token,
        });
        let serving = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("lookout-preview".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let shared = Arc::clone(&serving);
                    // One thread per request: a stream lasts as long as its viewer stays.
                    let _ = std::thread::Builder::new()
                        .name("lookout-preview-viewer".into())
                        .spawn(move || respond(&shared, request));
                }
            })
            .map_err(|e| PreviewError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        Ok((
            PreviewSink {
                shared,
                smoothers: (0..options.regions.as_zones().len().max(1))
                    .map(|_| Smoother::new(options.smooth.max(1)))
                    .collect(),
                labels: options.labels,
                background: options.background,
                zone_status: vec![serde_json::Value::Null; options.regions.as_zones().len()],
                regions: options.regions,
                copied: 0,
            },
            url,
        ))
    }

    fn push_event(&self, event: serde_json::Value) {
        if let Ok(mut shown) = self.shared.shown.lock() {
            shown.events.push_back(event);
            while shown.events.len() > EVENTS_KEPT {
                shown.events.pop_front();
            }
        }
    }
}

impl PreviewSink {
    /// The regions drawn over the image: each zone (with its last answer), or the `--roi`, with its name and
    /// fractions.
    fn regions_json(&self) -> serde_json::Value {
        regions_json(&self.regions, &self.zone_status)
    }
}

/// The regions drawn over the image: each zone (with its last answer), or the `--roi`.
fn regions_json(regions: &Regions, zone_status: &[serde_json::Value]) -> serde_json::Value {
    let region = |r: lookout_shared::Region| json!([r.x, r.y, r.w, r.h]);
    match regions {
        Regions::Frame(r) if r.is_full() => json!([]),
        Regions::Frame(r) => json!([{"name": "roi", "region": region(*r)}]),
        Regions::Zones(zones) => zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let mut zone = match zone_status.get(i) {
                    Some(status) if !status.is_null() => status.clone(),
                    _ => json!({}),
                };
                zone["name"] = json!(z.name);
                zone["region"] = region(z.region);
                zone
            })
            .collect(),
    }
}

impl Sink for PreviewSink {
    fn frame(&mut self, f: &FrameReport<'_>) {
        let zone = self
            .regions
            .as_zones()
            .iter()
            .position(|z| Some(z.name.as_str()) == f.zone);
        let Some(smoother) = self.smoothers.get_mut(zone.unwrap_or(0)) else {
            return;
        };
        let smoothed = smoother.push(&f.prediction.probabilities);
        let viewers = self.shared.viewers.load(Ordering::SeqCst);
        let bars: Vec<serde_json::Value> = self
            .labels
            .iter()
            .zip(&smoothed)
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.background)
            .map(|(_, (label, score))| json!({"label": label, "score": score}))
            .collect();
        let answer = json!({
            "label": f.label,
            "answer": f.answer(),
            "score": f.prediction.score,
            "unknown": f.prediction.unknown,
            "background": f.prediction.background,
            "ood_score": f.prediction.ood_score,
            "smoothed": bars,
        });
        if let Some(slot) = zone.and_then(|i| self.zone_status.get_mut(i)) {
            *slot = answer.clone();
        }
        let mut status = answer;
        status["frame"] = json!(f.number);
        status["fps"] = json!(round3(f.fps));
        status["latency_ms"] = json!(round3(ms(f.latency)));
        status["behind"] = json!(f.behind);
        status["viewers"] = json!(viewers);
        status["zones"] = self.regions_json();
        // Copying the frame costs a memcpy; it is done only while someone watches, once per frame.
        let frame = (viewers > 0 && self.copied != f.number).then(|| Arc::new(f.raw.clone()));
        if frame.is_some() {
            self.copied = f.number;
        }
        if let Ok(mut shown) = self.shared.shown.lock() {
            shown.generation += 1;
            shown.status = status;
            if frame.is_some() {
                shown.frame = frame;
            }
        }
        self.shared.new_frame.notify_all();
    }

    fn model(
        &mut self,
        info: &super::reload::ModelInfo,
        _event: &super::reload::ModelEvent,
        _frame: u64,
    ) {
        if info.labels != self.labels {
            // The bars are per label: they start again with the new bundle's.
            self.labels.clone_from(&info.labels);
            self.smoothers
                .iter_mut()
                .for_each(|s| *s = Smoother::new(s.window()));
        }
        self.background = info.background_index();
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        self.push_event(json!({"type": c.kind.as_str(), "label": c.label_name, "frame": c.frame, "score": c.score,
            "zone": c.zone}));
    }

    fn scene(&mut self, c: &SceneChange<'_>) {
        let kind = if c.unknown { "unknown" } else { "known" };
        self.push_event(
            json!({"type": kind, "label": "scene", "frame": c.frame, "score": c.fraction, "zone": c.zone}),
        );
    }

    fn finish(&mut self, _summary: &WatchSummary) {
        // Wake the viewers so their streams end with the run.
        if let Ok(mut shown) = self.shared.shown.lock() {
            shown.ended = true;
        }
        self.shared.new_frame.notify_all();
    }
}

/// 128 random bits from the OS, hex.
fn generate_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `request` carries the token (when one is needed).
fn authorized(shared: &Shared, request: &tiny_http::Request) -> bool {
    let Some(token) = &shared.token else {
        return true;
    };
    let in_query = request
        .url()
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|kv| kv == format!("token={token}")));
    let in_header = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Authorization") && h.value.as_str() == format!("Bearer {token}"));
    in_query || in_header
}

/// `response` with these headers (all ASCII constants here, so none is refused).
fn with_headers<R: Read>(
    mut response: tiny_http::Response<R>,
    headers: &[(&str, &str)],
) -> tiny_http::Response<R> {
    for (name, value) in headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    response
}

fn respond(shared: &Shared, request: tiny_http::Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    if !authorized(shared, &request) {
        let _ = request.respond(
            tiny_http::Response::from_string("401: this preview needs its token (?token=…)\n")
                .with_status_code(401),
        );
        return;
    }
    let _ = match path.as_str() {
        "/" | "/index.html" => request.respond(with_headers(
            tiny_http::Response::from_string(PAGE),
            &[("Content-Type", "text/html; charset=utf-8")],
        )),
        "/healthz" => request.respond(tiny_http::Response::from_string("ok\n")),
        "/status.json" => {
            let body = shared
                .shown
                .lock()
                .map(|s| {
                    let mut status = s.status.clone();
                    if status.is_null() {
                        status = json!({"frame": 0, "label": "", "answer": "", "score": 0.0, "unknown": false,
                            "background": false, "ood_score": null, "smoothed": [], "fps": 0.0, "latency_ms": 0.0,
                            "behind": 0, "viewers": 0, "zones": s.regions});
                    }
                    status["events"] = json!(s.events);
                    status.to_string()
                })
                .unwrap_or_else(|_| "{}".into());
            request.respond(with_headers(
                tiny_http::Response::from_string(body),
                &[
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "no-store"),
                ],
            ))
        }
        "/stream.mjpg" => stream(shared, request),
        _ => request.respond(tiny_http::Response::from_string("404\n").with_status_code(404)),
    };
}

/// Counts a viewer in while it is alive.
struct Viewer<'a>(&'a AtomicUsize);

impl Drop for Viewer<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stream(shared: &Shared, request: tiny_http::Request) -> std::io::Result<()> {
    if shared.viewers.fetch_add(1, Ordering::SeqCst) >= MAX_VIEWERS {
        shared.viewers.fetch_sub(1, Ordering::SeqCst);
        return request.respond(
            tiny_http::Response::from_string("503: too many viewers\n").with_status_code(503),
        );
    }
    let _viewer = Viewer(&shared.viewers);
    let reader = MjpegReader {
        shared,
        seen: 0,
        part: Vec::new(),
        at: 0,
    };
    let content_type = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    request.respond(with_headers(
        tiny_http::Response::new(tiny_http::StatusCode(200), Vec::new(), reader, None, None),
        &[
            ("Content-Type", &content_type),
            ("Cache-Control", "no-store"),
        ],
    ))
}

/// The stream's body: each newest frame as one part, waiting for the next; ends with the run.
struct MjpegReader<'a> {
    shared: &'a Shared,
    seen: u64,
    part: Vec<u8>,
    at: usize,
}

impl Read for MjpegReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.part.len() {
            let Some(jpeg) = self.next_jpeg() else {
                return Ok(0);
            };
            self.part.clear();
            self.part.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                )
                .as_bytes(),
            );
            self.part.extend_from_slice(&jpeg);
            self.part.extend_from_slice(b"\r\n");
            self.at = 0;
        }
        let n = buf.len().min(self.part.len() - self.at);
        buf[..n].copy_from_slice(&self.part[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl MjpegReader<'_> {
    /// Waits for a frame newer than the last one sent; `None` when the run has ended (or nothing came for 30 s).
    fn next_jpeg(&mut self) -> Option<Vec<u8>> {
        loop {
            let frame = {
                let mut shown = self.shared.shown.lock().ok()?;
                loop {
                    if shown.ended {
                        return None;
                    }
                    if shown.generation > self.seen {
                        if let Some(frame) = &shown.frame {
                            self.seen = shown.generation;
                            break Arc::clone(frame);
                        }
                    }
                    let (next, waited) = self
                        .shared
                        .new_frame
                        .wait_timeout(shown, Duration::from_secs(30))
                        .ok()?;
                    if waited.timed_out() {
                        return None;
                    }
                    shown = next;
                }
            };
            // Encoding (when needed) happens here, outside the lock and off the inference thread.
            if let Some(jpeg) = jpeg_of(&frame) {
                return Some(jpeg);
            }
        }
    }
}

/// The frame as JPEG: a camera's JPEG as it is; anything else encoded here, on the viewer's thread.
fn jpeg_of(frame: &RawFrame) -> Option<Vec<u8>> {
    if let RawFrame::Encoded { bytes, .. } = frame {
        if bytes.starts_with(&[0xFF, 0xD8]) {
            return Some(bytes.clone());
        }
    }
    let image = frame.decode().ok()?;
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&image)
        .ok()?;
    Some(out)
}

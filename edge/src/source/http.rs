//! `http://…` and `https://…` cameras, read by our own code on ureq: an MJPEG stream
//! (`multipart/x-mixed-replace`, what most IP cameras and `watch --preview` serve) split into JPEGs as it comes,
//! or a snapshot URL (one JPEG per request) polled at `--fps`. When the camera drops (an error, the stream
//! ending, no byte for 10 s), the source reconnects with backoff (0.5 s doubling to 30 s), says so once per
//! outage and again when the camera is back. A user name may be in the address (`http://user@cam/…`); the
//! password only comes from a file or the environment, never from the command line, and is never printed.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;

use super::address::CameraAddress;
use super::mjpeg::MjpegSplitter;
use super::{FrameSource, RawFrame, Reconnect, SourceOptions};
use crate::error::EdgeError;

/// The largest snapshot accepted (a 4K JPEG is a few MB).
const MAX_SNAPSHOT: u64 = 32 << 20;
/// No byte for this long and the camera counts as gone.
const STALL: Duration = Duration::from_secs(10);

/// What the camera serves, learnt from the first answer's `Content-Type`.
enum Body {
    Stream(Box<dyn Read + Send>, MjpegSplitter),
    Snapshot,
}

/// An HTTP(S) camera.
pub struct HttpSource {
    /// The address as shown: without credentials.
    shown: String,
    url: String,
    authorization: Option<String>,
    agent: ureq::Agent,
    body: Option<Body>,
    opts: SourceOptions,
    reconnect: Reconnect,
    next_snapshot: Instant,
}

impl HttpSource {
    /// A camera at `url` (`http://[user@]host[:port]/path`); `password` from `--source-password-file` or
    /// `LOOKOUT_SOURCE_PASSWORD`. Nothing is fetched until the first frame is asked for.
    pub fn new(
        url: &str,
        password: Option<String>,
        opts: SourceOptions,
    ) -> Result<Self, EdgeError> {
        let address = CameraAddress::parse(url, password.is_some())?;
        let authorization = address.user.as_ref().map(|user| {
            let pair = format!("{user}:{}", password.unwrap_or_default());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(10)))
            .timeout_per_read(Some(STALL))
            .build()
            .into();
        Ok(HttpSource {
            shown: address.shown(),
            url: address.shown(),
            authorization,
            agent,
            body: None,
            opts,
            reconnect: Reconnect::new(address.shown()),
            next_snapshot: Instant::now(),
        })
    }

    fn get(&self) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut request = self.agent.get(&self.url);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        request.call().map_err(|e| match e {
            ureq::Error::StatusCode(401 | 403) => {
                "the camera refused the credentials (the user in the address, --source-password-file / \
                 LOOKOUT_SOURCE_PASSWORD)"
                    .to_string()
            }
            other => other.to_string(),
        })
    }

    /// Connects and learns what the camera serves; a snapshot camera's first JPEG comes back at once.
    fn connect(&mut self) -> Result<Option<Vec<u8>>, String> {
        let response = self.get()?;
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if kind.starts_with("multipart/") {
            let reader = response.into_body().into_reader();
            self.body = Some(Body::Stream(Box::new(reader), MjpegSplitter::new()));
            Ok(None)
        } else if kind.starts_with("image/") {
            self.body = Some(Body::Snapshot);
            let bytes = response
                .into_body()
                .with_config()
                .limit(MAX_SNAPSHOT)
                .read_to_vec()
                .map_err(|e| e.to_string())?;
            Ok(Some(bytes))
        } else {
            Err(format!(
                "it serves {kind:?}, not an MJPEG stream (multipart/x-mixed-replace) or a JPEG snapshot"
            ))
        }
    }

    /// The next JPEG of the connection, `Err` when it broke.
    fn read_frame(&mut self) -> Result<Vec<u8>, String> {
        match self.body.as_mut() {
            Some(Body::Stream(reader, splitter)) => loop {
                if let Some(jpeg) = splitter.next_frame() {
                    return Ok(jpeg);
                }
                let mut chunk = vec![0u8; 64 * 1024];
                let n = reader.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the stream ended".into());
                }
                splitter.push(&chunk[..n]);
            },
            Some(Body::Snapshot) => {
                // Polled at --fps (10 when not given), the next request when it is time.
                let fps = self.opts.fps.filter(|f| *f > 0.0).unwrap_or(10.0);
                let now = Instant::now();
                if self.next_snapshot > now {
                    std::thread::sleep(self.next_snapshot - now);
                }
                self.next_snapshot = Instant::now() + Duration::from_secs_f32(1.0 / fps);
                let response = self.get()?;
                response
                    .into_body()
                    .with_config()
                    .limit(MAX_SNAPSHOT)
                    .read_to_vec()
                    .map_err(|e| e.to_string())
            }
            None => Err("not connected".into()),
        }
    }

    fn lost(&mut self, reason: &str) {
        self.body = None;
        self.reconnect.lost(reason, &self.opts);
    }
}

impl FrameSource for HttpSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError> {
        while !self.opts.stop.load(Ordering::SeqCst) {
            let frame = if self.body.is_none() {
                match self.connect() {
                    Ok(Some(snapshot)) => Ok(snapshot),
                    Ok(None) => self.read_frame(),
                    Err(e) => Err(e),
                }
            } else {
                self.read_frame()
            };
            match frame {
                Ok(bytes) => {
                    self.reconnect.back(&self.opts);
                    return Ok(Some(RawFrame::Encoded { bytes, name: None }));
                }
                Err(reason) => self.lost(&reason),
            }
        }
        Ok(None)
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn is_file(&self) -> bool {
        false
    }
}

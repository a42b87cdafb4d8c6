//! `rtsp://…` cameras: what most IP cameras, doorbells and NVRs serve (H.264, H.265 or Motion-JPEG over RTP).
//! Read through an `ffmpeg` child process that decodes whatever the camera sends and writes JPEGs to a pipe,
//! which [`MjpegSplitter`] splits as any MJPEG stream. Why a child and not a Rust RTSP client: the RTSP part is
//! small, the video decoders are not; ffmpeg has them all (and a Pi's hardware decoder), is one `apt install`
//! on Raspberry Pi OS, and a crash of it costs a reconnect, not the `watch` process.
//!
//! RTP goes over the RTSP connection (TCP interleaved: through NAT and firewalls, no UDP loss). When the camera
//! drops (ffmpeg exits, or no frame for 10 s) the source starts ffmpeg again with backoff (0.5 s doubling to
//! 30 s), says so once per outage and again when the camera is back. The user name may be in the address; the
//! password comes from `--source-password-file` or `LOOKOUT_SOURCE_PASSWORD` and goes to ffmpeg percent-encoded
//! in the address it is given (ffmpeg has no other way to take it: other users of the machine can read a
//! process's arguments). What ffmpeg says is shown without it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::address::CameraAddress;
use super::mjpeg::MjpegSplitter;
use super::{FrameSource, RawFrame, Reconnect, SourceOptions};
use crate::error::EdgeError;

/// No frame for this long and the camera counts as gone.
const STALL: Duration = Duration::from_secs(10);

/// One ffmpeg run: its process, the JPEGs it wrote, the last thing it said.
struct Running {
    child: Child,
    frames: Receiver<Vec<u8>>,
    said: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RTSP camera, read through ffmpeg.
pub struct RtspSource {
    /// The address as shown: without credentials.
    shown: String,
    /// The address ffmpeg gets, with the password when there is one.
    url: String,
    opts: SourceOptions,
    running: Option<Running>,
    reconnect: Reconnect,
}

impl RtspSource {
    /// A camera at `url` (`rtsp://[user@]host[:port]/path`); `password` from `--source-password-file` or
    /// `LOOKOUT_SOURCE_PASSWORD`. Nothing is started until the first frame is asked for.
    pub fn new(
        url: &str,
        password: Option<String>,
        opts: SourceOptions,
    ) -> Result<Self, EdgeError> {
        let address = CameraAddress::parse(url, password.is_some())?;
        let credentials = match (&address.user, &password) {
            (Some(user), Some(password)) => format!(
                "{}:{}@",
                utf8_percent_encode(user, NON_ALPHANUMERIC),
                utf8_percent_encode(password, NON_ALPHANUMERIC)
            ),
            (Some(user), None) => format!("{}@", utf8_percent_encode(user, NON_ALPHANUMERIC)),
            (None, _) => String::new(),
        };
        Ok(RtspSource {
            shown: address.shown(),
            url: format!(
                "{}://{credentials}{}/{}",
                address.scheme, address.host, address.path
            ),
            opts,
            running: None,
            reconnect: Reconnect::new(address.shown()),
        })
    }

    /// ffmpeg's arguments: the camera in, JPEGs out on stdout (at `--fps` when given: ffmpeg drops the rest
    /// before encoding them).
    fn arguments(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-rtsp_transport",
            "tcp",
            "-timeout",
            "10000000",
            "-i",
            &self.url,
            "-an",
        ]
        .map(String::from)
        .to_vec();
        if let Some(fps) = self.opts.fps.filter(|f| *f > 0.0) {
            args.extend(["-vf".into(), format!("fps={fps}")]);
        }
        args.extend(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "-"].map(String::from));
        args
    }

    /// Starts ffmpeg, with a thread splitting its output into JPEGs and one keeping its last message.
    fn start(&self) -> std::io::Result<Running> {
        let mut command = Command::new("ffmpeg");
        command
            .args(self.arguments())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let (send, frames) = mpsc::sync_channel(4);
        let said = Arc::new(Mutex::new(String::new()));
        if let Some(mut stdout) = child.stdout.take() {
            std::thread::Builder::new()
                .name("rtsp-frames".into())
                .spawn(move || {
                    let mut splitter = MjpegSplitter::new();
                    let mut chunk = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                        splitter.push(&chunk[..n]);
                        while let Some(jpeg) = splitter.next_frame() {
                            if send.send(jpeg).is_err() {
                                return;
                            }
                        }
                    }
                })?;
        }
        if let Some(stderr) = child.stderr.take() {
            let (said, url, shown) = (Arc::clone(&said), self.url.clone(), self.shown.clone());
            std::thread::Builder::new()
                .name("rtsp-ffmpeg-log".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let line = ffmpeg_message(&line, &url, &shown);
                        if !line.is_empty() {
                            if let Ok(mut said) = said.lock() {
                                *said = line;
                            }
                        }
                    }
                })?;
        }
        Ok(Running {
            child,
            frames,
            said,
        })
    }
}

impl FrameSource for RtspSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError> {
        while !self.opts.stop.load(Ordering::SeqCst) {
            let running = match self.running.take() {
                Some(running) => running,
                None => match self.start() {
                    Ok(running) => running,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(EdgeError::SourceOpen {
                            source_spec: self.shown.clone(),
                            reason:
                                "rtsp:// cameras are read through ffmpeg, which is not installed \
                                     (sudo apt install ffmpeg)"
                                    .into(),
                        })
                    }
                    Err(e) => {
                        self.reconnect
                            .lost(&format!("cannot start ffmpeg: {e}"), &self.opts);
                        continue;
                    }
                },
            };
            // Waits in short steps: a stop is not kept waiting for a stalled camera.
            let waited = Instant::now();
            let frame = loop {
                match running.frames.recv_timeout(Duration::from_millis(200)) {
                    Err(RecvTimeoutError::Timeout)
                        if waited.elapsed() < STALL && !self.opts.stop.load(Ordering::SeqCst) => {}
                    other => break other,
                }
            };
            match frame {
                Ok(bytes) => {
                    self.running = Some(running);
                    self.reconnect.back(&self.opts);
                    return Ok(Some(RawFrame::Encoded { bytes, name: None }));
                }
                Err(RecvTimeoutError::Timeout) if self.opts.stop.load(Ordering::SeqCst) => break,
                Err(RecvTimeoutError::Timeout) => {
                    drop(running); // ends its ffmpeg before the backoff
                    self.reconnect
                        .lost(&format!("no frame for {} s", STALL.as_secs()), &self.opts);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let said = running.said.lock().map(|s| s.clone()).unwrap_or_default();
                    drop(running);
                    let reason = match said.as_str() {
                        "" => "the stream ended".to_string(),
                        s if s.contains("401") => format!(
                            "{s} (the user in the address, --source-password-file / LOOKOUT_SOURCE_PASSWORD)"
                        ),
                        s => s.to_string(),
                    };
                    self.reconnect.lost(&reason, &self.opts);
                }
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

/// No ffmpeg outlives `watch`: dropping the source kills it, and on Linux the kernel kills it when `watch` ends
/// without dropping it (a stop leaves the capture thread behind; `kill -9`; a crash). Without this a camera that
/// went quiet would keep its ffmpeg until ffmpeg's own timeout.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; prctl and getppid are system
    // calls that allocate nothing. The death signal follows the thread that forked: the capture thread, which
    // lives as long as the source or the process.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would send the signal.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("watch ended while starting ffmpeg"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// One line of ffmpeg's, fit to show: the address it names without the password, no `[rtsp @ 0x…]` prefix.
fn ffmpeg_message(line: &str, url: &str, shown: &str) -> String {
    let line = line.replace(url, shown);
    let line = match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, message)) => message.to_string(),
        None => line,
    };
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SourceOptions {
        SourceOptions {
            fps: Some(5.0),
            stop: Arc::default(),
            status: Arc::new(|_: &str| {}),
            password: None,
            away: Arc::default(),
        }
    }

    #[test]
    fn the_password_goes_to_ffmpeg_encoded_and_nowhere_else() {
        let source = RtspSource::new(
            "rtsp://admin@cam.local:554/stream1",
            Some("p@ss/w:rd%".into()),
            options(),
        )
        .expect("an address");
        assert_eq!(source.describe(), "rtsp://cam.local:554/stream1");
        assert_eq!(
            source.url,
            "rtsp://admin:p%40ss%2Fw%3Ard%25@cam.local:554/stream1"
        );
        let args = source.arguments();
        assert!(args.windows(2).any(|w| w == ["-vf", "fps=5"]), "{args:?}");
        assert_eq!(args.last().map(String::as_str), Some("-"));
        let said = format!(
            "{}: Server returned 401 Unauthorized (authorization failed)",
            source.url
        );
        let shown = ffmpeg_message(&said, &source.url, &source.shown);
        assert_eq!(
            shown,
            "rtsp://cam.local:554/stream1: Server returned 401 Unauthorized (authorization failed)"
        );
        assert_eq!(
            ffmpeg_message(
                "[rtsp @ 0x55d] method DESCRIBE failed: 404 Not Found",
                "",
                ""
            ),
            "method DESCRIBE failed: 404 Not Found"
        );
    }
}

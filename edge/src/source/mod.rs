//! Where frames come from: a V4L2 camera, an IP camera (HTTP MJPEG or snapshots, RTSP), an MJPEG byte stream
//! (stdin, file or pipe), or a folder of images.

pub mod address;
pub mod dir;
pub mod http;
pub mod mjpeg;
pub mod rtsp;
#[cfg(target_os = "linux")]
pub mod v4l2;
pub mod yuyv;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::error::EdgeError;

/// One captured frame, still in the form the source delivered it: decoding happens on the inference thread,
/// so frames that get dropped are never decoded.
#[derive(Debug, Clone)]
pub enum RawFrame {
    /// An encoded image (JPEG from a camera or stream, any supported format from a folder).
    Encoded {
        /// The encoded bytes.
        bytes: Vec<u8>,
        /// The file it came from, if any.
        name: Option<PathBuf>,
    },
    /// Uncompressed YUYV 4:2:2 from a camera.
    Yuyv {
        /// The frame bytes.
        data: Vec<u8>,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes per line.
        stride: u32,
    },
    /// An already decoded image.
    Rgb(RgbImage),
    /// A file of a folder source that could not be read (a broken link, a directory named `x.jpg`): it fails
    /// as one frame, reported with its path, and the source goes on with the next file.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The kind of the read error.
        kind: std::io::ErrorKind,
        /// The read error's text.
        reason: String,
    },
}

impl RawFrame {
    /// The file the frame came from, if any.
    pub fn name(&self) -> Option<&Path> {
        match self {
            RawFrame::Encoded { name, .. } => name.as_deref(),
            RawFrame::Unreadable { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Decodes the frame into an RGB image; the frame itself stays as delivered (a sink may save it).
    pub fn decode(&self) -> Result<RgbImage, EdgeError> {
        self.decode_with(lookout_shared::image_io::decode_bytes)
    }

    /// Decodes the frame for a model whose recipe is `spec` and which will see each of `regions` of it (the
    /// whole frame when there are none): a large JPEG frame is decoded smaller where the recipe keeps no more
    /// detail, as `lookout-edge classify` decodes the same file
    /// ([`lookout_shared::image_io::decode_bytes_for`]).
    pub fn decode_for(
        &self,
        spec: &lookout_shared::preprocess::PreprocessSpec,
        regions: &[lookout_shared::Region],
    ) -> Result<RgbImage, EdgeError> {
        self.decode_with(|bytes, name| {
            lookout_shared::image_io::decode_bytes_for(bytes, name, spec, regions)
        })
    }

    fn decode_with(
        &self,
        decode_encoded: impl FnOnce(
            &[u8],
            &Path,
        ) -> Result<RgbImage, lookout_shared::image_io::DecodeError>,
    ) -> Result<RgbImage, EdgeError> {
        match self {
            RawFrame::Encoded { bytes, name } => {
                let name = name.as_deref().unwrap_or(Path::new("frame.jpg"));
                Ok(decode_encoded(bytes, name)?)
            }
            RawFrame::Yuyv {
                data,
                width,
                height,
                stride,
            } => yuyv::yuyv_to_rgb(data, *width, *height, *stride).ok_or_else(|| {
                EdgeError::BadFrame(format!(
                    "a {width}x{height} YUYV frame of {} bytes is short",
                    data.len()
                ))
            }),
            RawFrame::Rgb(image) => Ok(image.clone()),
            RawFrame::Unreadable { path, kind, reason } => Err(EdgeError::Io {
                path: path.clone(),
                source: std::io::Error::new(*kind, reason.clone()),
            }),
        }
    }
}

/// A source of frames. `next_frame` blocks until a frame is there; `Ok(None)` means the source has ended.
pub trait FrameSource: Send {
    /// The next frame, or `None` at the end of a file or folder (or when a camera source was told to stop).
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError>;
    /// The source as the user would write it, for messages.
    fn describe(&self) -> String;
    /// Whether the source is a file or folder that can be read faster than real time (so `--fps` paces it),
    /// rather than a live camera or pipe that paces itself.
    fn is_file(&self) -> bool;
}

/// A parsed `--source` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `v4l2:/dev/videoN`: a V4L2 camera.
    V4l2(PathBuf),
    /// `mjpeg:-`: concatenated JPEGs on standard input.
    MjpegStdin,
    /// `mjpeg:FILE`: concatenated JPEGs in a file or named pipe.
    MjpegFile(PathBuf),
    /// `dir:PATH`: the images of a folder in sorted order.
    Dir(PathBuf),
    /// `http://…` or `https://…`: an IP camera's MJPEG stream or snapshot URL.
    Http(String),
    /// `rtsp://…`: an IP camera's RTSP stream (read through ffmpeg).
    Rtsp(String),
}

impl std::str::FromStr for SourceSpec {
    type Err = EdgeError;

    fn from_str(s: &str) -> Result<Self, EdgeError> {
        let bad = || EdgeError::BadSourceSpec(s.to_string());
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(SourceSpec::Http(s.to_string()));
        }
        if s.starts_with("rtsp://") {
            return Ok(SourceSpec::Rtsp(s.to_string()));
        }
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "v4l2" => Ok(SourceSpec::V4l2(PathBuf::from(rest))),
            "mjpeg" if rest == "-" => Ok(SourceSpec::MjpegStdin),
            "mjpeg" => Ok(SourceSpec::MjpegFile(PathBuf::from(rest))),
            "dir" => Ok(SourceSpec::Dir(PathBuf::from(rest))),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            SourceSpec::MjpegStdin => write!(f, "mjpeg:-"),
            SourceSpec::MjpegFile(p) => write!(f, "mjpeg:{}", p.display()),
            SourceSpec::Dir(p) => write!(f, "dir:{}", p.display()),
            SourceSpec::Http(url) | SourceSpec::Rtsp(url) => {
                write!(f, "{}", address::shown(url))
            }
        }
    }
}

/// Settings for opening a source.
#[derive(Clone)]
pub struct SourceOptions {
    /// Frame rate to ask a camera for.
    pub fps: Option<f32>,
    /// Set to stop a camera source that is waiting to reconnect.
    pub stop: Arc<AtomicBool>,
    /// Receives one-line status messages (camera missing, reconnected).
    pub status: Arc<dyn Fn(&str) + Send + Sync>,
    /// The password of an IP camera (`--source-password-file`, `LOOKOUT_SOURCE_PASSWORD`); never printed.
    pub password: Option<String>,
    /// Milliseconds a live source spent without its camera, added up for the summary
    /// ([`crate::pipeline::Pipeline::camera_away`]).
    pub away: Arc<AtomicU64>,
}

/// A live source's time without its camera: told once when it goes, added up when it is back.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// The camera is gone; true the first time (say so once per outage).
    pub fn lost(&mut self) -> bool {
        let first = self.since.is_none();
        self.since.get_or_insert_with(Instant::now);
        first
    }

    /// The camera is back: how long it was away (added to `away`), if it was.
    pub fn back(&mut self, away: &AtomicU64) -> Option<Duration> {
        let gone = self.since.take()?.elapsed();
        away.fetch_add(
            u64::try_from(gone.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
        Some(gone)
    }
}

/// How a live IP camera source comes back: backoff from 0.5 s doubling to 30 s, one line per outage and one
/// when the camera is back (with how long it was away, added up for the summary).
#[derive(Debug)]
pub struct Reconnect {
    /// The camera as messages show it (no credentials).
    shown: String,
    backoff: Duration,
    outage: Outage,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_millis(500);
    const LONGEST: Duration = Duration::from_secs(30);

    /// For the camera `shown`.
    pub fn new(shown: String) -> Reconnect {
        Reconnect {
            shown,
            backoff: Self::FIRST,
            outage: Outage::default(),
        }
    }

    /// The camera is gone (`reason`): says so at the start of an outage, then waits the backoff (in short
    /// steps, so a stop is not kept waiting) and doubles it.
    pub fn lost(&mut self, reason: &str, opts: &SourceOptions) {
        if self.outage.lost() {
            (opts.status)(&format!(
                "camera {}: {reason}; reconnecting with backoff up to {} s",
                self.shown,
                Self::LONGEST.as_secs()
            ));
        }
        let until = Instant::now() + self.backoff;
        while Instant::now() < until && !opts.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.backoff = (self.backoff * 2).min(Self::LONGEST);
    }

    /// A frame came: says when the camera is back from an outage, and starts the backoff over.
    pub fn back(&mut self, opts: &SourceOptions) {
        if let Some(gone) = self.outage.back(&opts.away) {
            (opts.status)(&format!(
                "camera {}: back after {:.1} s",
                self.shown,
                gone.as_secs_f64()
            ));
        }
        self.backoff = Self::FIRST;
    }
}

impl std::fmt::Debug for SourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceOptions")
            .field("fps", &self.fps)
            .finish_non_exhaustive()
    }
}

/// Opens the source a spec names. A missing camera is not an error here: the V4L2 source retries with backoff.
pub fn open_source(
    spec: &SourceSpec,
    opts: &SourceOptions,
) -> Result<Box<dyn FrameSource>, EdgeError> {
    match spec {
        #[cfg(target_os = "linux")]
        SourceSpec::V4l2(path) => Ok(Box::new(v4l2::V4l2Source::new(path.clone(), opts.clone()))),
        #[cfg(not(target_os = "linux"))]
        SourceSpec::V4l2(_) => Err(EdgeError::SourceOpen {
            source_spec: spec.to_string(),
            reason: "V4L2 cameras exist on Linux only; use mjpeg:- with your camera tool".into(),
        }),
        SourceSpec::MjpegStdin => Ok(Box::new(mjpeg::MjpegSource::stdin())),
        SourceSpec::MjpegFile(path) => Ok(Box::new(mjpeg::MjpegSource::open(path.clone())?)),
        SourceSpec::Dir(path) => Ok(Box::new(dir::DirSource::open(path.clone())?)),
        SourceSpec::Http(url) => Ok(Box::new(http::HttpSource::new(
            url,
            opts.password.clone(),
            opts.clone(),
        )?)),
        SourceSpec::Rtsp(url) => Ok(Box::new(rtsp::RtspSource::new(
            url,
            opts.password.clone(),
            opts.clone(),
        )?)),
    }
}

/// Replays a file or folder source from the start each time it ends (`--loop`).
pub struct Looping {
    spec: SourceSpec,
    opts: SourceOptions,
    inner: Box<dyn FrameSource>,
    frames_this_pass: u64,
}

impl Looping {
    /// Opens the source; it will be reopened at each end.
    pub fn open(spec: SourceSpec, opts: SourceOptions) -> Result<Self, EdgeError> {
        let inner = open_source(&spec, &opts)?;
        Ok(Self {
            spec,
            opts,
            inner,
            frames_this_pass: 0,
        })
    }
}

impl FrameSource for Looping {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError> {
        loop {
            if let Some(frame) = self.inner.next_frame()? {
                self.frames_this_pass += 1;
                return Ok(Some(frame));
            }
            // A pass without a single frame would loop forever without producing anything.
            if self.frames_this_pass == 0 {
                return Ok(None);
            }
            self.frames_this_pass = 0;
            self.inner = open_source(&self.spec, &self.opts)?;
        }
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn is_file(&self) -> bool {
        self.inner.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse() {
        assert_eq!(
            "v4l2:/dev/video0".parse::<SourceSpec>().ok(),
            Some(SourceSpec::V4l2("/dev/video0".into()))
        );
        assert_eq!(
            "mjpeg:-".parse::<SourceSpec>().ok(),
            Some(SourceSpec::MjpegStdin)
        );
        assert_eq!(
            "mjpeg:a.mjpg".parse::<SourceSpec>().ok(),
            Some(SourceSpec::MjpegFile("a.mjpg".into()))
        );
        assert_eq!(
            "dir:x".parse::<SourceSpec>().ok(),
            Some(SourceSpec::Dir("x".into()))
        );
        assert_eq!(
            "http://cam.local/video.mjpg".parse::<SourceSpec>().ok(),
            Some(SourceSpec::Http("http://cam.local/video.mjpg".into()))
        );
        assert_eq!(
            "rtsp://admin@cam:554/s1".parse::<SourceSpec>().ok(),
            Some(SourceSpec::Rtsp("rtsp://admin@cam:554/s1".into()))
        );
        for bad in ["", "dir:", "/dev/video0", "rtmp://cam"] {
            let err = bad.parse::<SourceSpec>().expect_err(bad);
            assert!(err.to_string().contains("v4l2:/dev/videoN"), "{err}");
        }
    }
}

//! Frames from a V4L2 camera (USB webcams; the Pi camera module through its V4L2 compatibility nodes).
//!
//! Asks for MJPEG (cheap on USB, decoded on the inference thread), falls back to YUYV. Only two buffers are
//! queued so a frame handed out is at most one frame old. A missing or unplugged camera is retried with
//! exponential backoff, printing one line per distinct problem.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::{Format, FourCC};

use super::{FrameSource, Outage, RawFrame, SourceOptions};
use crate::error::EdgeError;

/// Buffers queued in the driver: few, so frames are fresh.
const BUFFERS: u32 = 2;
/// Resolution asked for; the driver picks the nearest it supports. The model needs 224×224, so more is waste.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);

struct Open {
    // Declared before the device so the stream (and its buffer mappings) is dropped first.
    stream: MmapStream<'static>,
    _device: Device,
    format: Format,
}

/// A V4L2 capture device that reconnects by itself.
pub struct V4l2Source {
    path: PathBuf,
    opts: SourceOptions,
    open: Option<Open>,
    last_problem: Option<String>,
    outage: Outage,
    retry: Duration,
}

impl std::fmt::Debug for V4l2Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Source")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl V4l2Source {
    /// A source for the device at `path`; nothing is opened until the first frame is asked for.
    pub fn new(path: PathBuf, opts: SourceOptions) -> Self {
        Self {
            path,
            opts,
            open: None,
            last_problem: None,
            outage: Outage::default(),
            retry: FIRST_RETRY,
        }
    }

    fn name(&self) -> String {
        format!("v4l2:{}", self.path.display())
    }

    fn try_open(&self) -> Result<Open, String> {
        let device = Device::with_path(&self.path).map_err(|e| {
            format!(
                "{e}; is the camera plugged in and is {} the right device?",
                self.path.display()
            )
        })?;
        let wanted = [FourCC::new(b"MJPG"), FourCC::new(b"YUYV")];
        let mut format = None;
        for fourcc in wanted {
            if let Ok(actual) = device.set_format(&Format::new(WIDTH, HEIGHT, fourcc)) {
                if actual.fourcc == fourcc {
                    format = Some(actual);
                    break;
                }
            }
        }
        let format = format.ok_or_else(|| {
            let current = device
                .format()
                .map(|f| f.fourcc.to_string())
                .unwrap_or_else(|_| "unknown".into());
            format!("the camera offers neither MJPG nor YUYV (it offers {current})")
        })?;
        if let Some(fps) = self.opts.fps {
            // Best effort: not every driver lets the frame rate be set.
            let _ = device.set_params(&v4l::video::capture::Parameters::with_fps(
                fps.round().max(1.0) as u32,
            ));
        }
        let stream = MmapStream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| format!("cannot start streaming: {e}"))?;
        Ok(Open {
            stream,
            _device: device,
            format,
        })
    }

    fn report(&mut self, problem: String) {
        self.outage.lost();
        if self.last_problem.as_deref() != Some(problem.as_str()) {
            (self.opts.status)(&format!(
                "camera {}: {problem}; retrying with backoff",
                self.name()
            ));
            self.last_problem = Some(problem);
        }
    }

    /// Sleeps for the current backoff in short steps so a stop request is noticed; false if told to stop.
    fn back_off(&mut self) -> bool {
        let mut left = self.retry;
        while left > Duration::ZERO {
            if self.opts.stop.load(Ordering::Relaxed) {
                return false;
            }
            let step = left.min(Duration::from_millis(100));
            std::thread::sleep(step);
            left -= step;
        }
        self.retry = (self.retry * 2).min(MAX_RETRY);
        true
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError> {
        loop {
            if self.opts.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if self.open.is_none() {
                match self.try_open() {
                    Ok(open) => {
                        if self.last_problem.take().is_some() {
                            (self.opts.status)(&format!("camera {} connected", self.name()));
                        }
                        self.outage.back(&self.opts.away);
                        self.retry = FIRST_RETRY;
                        self.open = Some(open);
                    }
                    Err(problem) => {
                        self.report(problem);
                        if !self.back_off() {
                            return Ok(None);
                        }
                        continue;
                    }
                }
            }
            let Some(open) = self.open.as_mut() else {
                continue;
            };
            let format = open.format;
            match open.stream.next() {
                Ok((buffer, meta)) => {
                    let used = (meta.bytesused as usize).min(buffer.len());
                    let data = buffer[..used].to_vec();
                    let frame = if format.fourcc == FourCC::new(b"MJPG") {
                        RawFrame::Encoded {
                            bytes: data,
                            name: None,
                        }
                    } else {
                        RawFrame::Yuyv {
                            data,
                            width: format.width,
                            height: format.height,
                            stride: format.stride,
                        }
                    };
                    return Ok(Some(frame));
                }
                Err(e) => {
                    self.open = None;
                    self.report(format!("capture failed: {e}"));
                    if !self.back_off() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        self.name()
    }

    fn is_file(&self) -> bool {
        false
    }
}

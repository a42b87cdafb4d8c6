//! Splitting a byte stream of concatenated JPEGs (MJPEG as `rpicam-vid --codec mjpeg -o -` writes it) into frames.
//!
//! The splitter walks the JPEG marker segments instead of searching for the first `FF D9`, so an EXIF thumbnail
//! (a whole JPEG inside an APP1 segment) does not cut a frame short, and garbage between frames is skipped.

use std::io::Read;
use std::path::PathBuf;

use super::{FrameSource, RawFrame};
use crate::error::EdgeError;

/// A frame larger than this is treated as corrupt and skipped: no sane camera frame is 64 MiB.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

const READ_CHUNK: usize = 64 << 10;

/// What the start of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// A whole JPEG in `start..end`.
    Frame { start: usize, end: usize },
    /// A JPEG starts at `start` but is not complete yet.
    Incomplete { start: usize },
    /// The JPEG starting at `start` is malformed; resume looking for a start marker after it.
    Corrupt { start: usize },
    /// No start marker: bytes before `keep_from` can be discarded.
    NoStart { keep_from: usize },
}

fn find_soi(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .map(|p| p + from)
}

/// Finds the next marker after entropy-coded data: an `FF` followed by neither `00` (a stuffed byte),
/// `FF` (fill), nor `D0..=D7` (restart markers, which are part of the scan).
fn find_marker_after_scan(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == 0xFF {
            match buf[i + 1] {
                0x00 | 0xD0..=0xD7 => i += 2,
                0xFF => i += 1,
                _ => return Some(i),
            }
        } else {
            i += 1;
        }
    }
    None
}

fn scan(buf: &[u8], from: usize) -> Scan {
    let Some(start) = find_soi(buf, from) else {
        // Keep the last two bytes: a start marker may straddle two reads.
        return Scan::NoStart {
            keep_from: buf.len().saturating_sub(2).max(from),
        };
    };
    let mut pos = start + 2;
    loop {
        if pos + 2 > buf.len() {
            return Scan::Incomplete { start };
        }
        if buf[pos] != 0xFF {
            return Scan::Corrupt { start };
        }
        let marker = buf[pos + 1];
        match marker {
            0xFF => pos += 1,
            0xD9 => {
                return Scan::Frame {
                    start,
                    end: pos + 2,
                }
            }
            0xD8 => return Scan::Corrupt { start },
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                if pos + 4 > buf.len() {
                    return Scan::Incomplete { start };
                }
                let length = u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize;
                if length < 2 {
                    return Scan::Corrupt { start };
                }
                pos += 2 + length;
                if marker == 0xDA {
                    match find_marker_after_scan(buf, pos) {
                        Some(next) => pos = next,
                        None => return Scan::Incomplete { start },
                    }
                }
            }
        }
    }
}

/// Incremental splitter: push bytes in, take whole JPEGs out.
#[derive(Debug, Default)]
pub struct MjpegSplitter {
    buf: Vec<u8>,
    skipped_bytes: u64,
    corrupt_frames: u64,
}

impl MjpegSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes skipped because they were outside any JPEG or part of a corrupt one.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    /// Frames skipped because their marker structure was broken or they were too large.
    pub fn corrupt_frames(&self) -> u64 {
        self.corrupt_frames
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn discard(&mut self, n: usize) {
        self.skipped_bytes += n as u64;
        self.buf.drain(..n);
    }

    /// The next whole JPEG, if the buffer holds one.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            match scan(&self.buf, 0) {
                Scan::Frame { start, end } => {
                    let frame = self.buf[start..end].to_vec();
                    self.skipped_bytes += start as u64;
                    self.buf.drain(..end);
                    return Some(frame);
                }
                Scan::Incomplete { start } => {
                    self.discard(start);
                    if self.buf.len() > MAX_FRAME_BYTES {
                        self.corrupt_frames += 1;
                        // Skip this start marker and look for the next one.
                        self.discard(2);
                        continue;
                    }
                    return None;
                }
                Scan::Corrupt { start } => {
                    self.corrupt_frames += 1;
                    self.discard(start + 2);
                }
                Scan::NoStart { keep_from } => {
                    self.discard(keep_from);
                    return None;
                }
            }
        }
    }
}

/// Frames from a stream of concatenated JPEGs: stdin (`mjpeg:-`) or a file (`mjpeg:FILE`).
pub struct MjpegSource {
    name: String,
    reader: Box<dyn Read + Send>,
    splitter: MjpegSplitter,
    chunk: Vec<u8>,
    eof: bool,
    is_file: bool,
}

impl std::fmt::Debug for MjpegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MjpegSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MjpegSource {
    /// Reads from any byte stream; `name` is used in messages.
    pub fn from_reader(
        name: impl Into<String>,
        reader: Box<dyn Read + Send>,
        is_file: bool,
    ) -> Self {
        Self {
            name: name.into(),
            reader,
            splitter: MjpegSplitter::new(),
            chunk: vec![0; READ_CHUNK],
            eof: false,
            is_file,
        }
    }

    /// Reads standard input.
    pub fn stdin() -> Self {
        Self::from_reader("mjpeg:-", Box::new(std::io::stdin()), false)
    }

    /// Opens a file (or a named pipe).
    pub fn open(path: PathBuf) -> Result<Self, EdgeError> {
        let file = std::fs::File::open(&path).map_err(|e| EdgeError::SourceOpen {
            source_spec: format!("mjpeg:{}", path.display()),
            reason: format!("{e}; check the path"),
        })?;
        let is_regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        Ok(Self::from_reader(
            format!("mjpeg:{}", path.display()),
            Box::new(file),
            is_regular,
        ))
    }

    /// The splitter's counters (skipped bytes, corrupt frames).
    pub fn splitter(&self) -> &MjpegSplitter {
        &self.splitter
    }
}

impl FrameSource for MjpegSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, EdgeError> {
        loop {
            if let Some(jpeg) = self.splitter.next_frame() {
                return Ok(Some(RawFrame::Encoded {
                    bytes: jpeg,
                    name: None,
                }));
            }
            if self.eof {
                return Ok(None);
            }
            match self.reader.read(&mut self.chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.splitter.push(&self.chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(EdgeError::SourceRead {
                        source_spec: self.name.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn is_file(&self) -> bool {
        self.is_file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal marker skeleton: SOI, APP0 segment, SOS header, entropy bytes, EOI.
    fn fake_jpeg(entropy: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xDA, 0x00, 0x03, 0x01,
        ];
        v.extend_from_slice(entropy);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    #[test]
    fn splits_frames_fed_byte_by_byte_and_skips_garbage() {
        let a = fake_jpeg(&[1, 2, 0xFF, 0x00, 3, 0xFF, 0xD3, 4]);
        let b = fake_jpeg(&[5, 6]);
        let mut stream = b"garbage".to_vec();
        stream.extend_from_slice(&a);
        stream.extend_from_slice(&[0, 0, 0]);
        stream.extend_from_slice(&b);
        let mut splitter = MjpegSplitter::new();
        let mut frames = Vec::new();
        for byte in &stream {
            splitter.push(std::slice::from_ref(byte));
            while let Some(f) = splitter.next_frame() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![a, b]);
        assert_eq!(splitter.skipped_bytes(), 7 + 3);
    }

    #[test]
    fn an_embedded_thumbnail_does_not_end_the_frame() {
        let thumbnail = fake_jpeg(&[9, 9]);
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((thumbnail.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(&thumbnail);
        let mut frame = vec![0xFF, 0xD8];
        frame.extend_from_slice(&app1);
        frame.extend_from_slice(&fake_jpeg(&[7])[2..]);
        let mut splitter = MjpegSplitter::new();
        splitter.push(&frame);
        assert_eq!(splitter.next_frame(), Some(frame));
    }

    #[test]
    fn a_truncated_frame_followed_by_a_good_one_resyncs() {
        let good = fake_jpeg(&[1, 2, 3]);
        let mut stream = good[..9].to_vec(); // cut inside the APP0 segment
        stream.extend_from_slice(&good);
        let mut splitter = MjpegSplitter::new();
        splitter.push(&stream);
        assert_eq!(splitter.next_frame(), Some(good));
        assert_eq!(splitter.corrupt_frames(), 1);
    }
}

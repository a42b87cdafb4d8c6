//! The detection message sent from the edge to a microcontroller.
//!
//! On the wire each message is a postcard-encoded [`Detection`] followed by a CRC-16 of those bytes,
//! COBS-framed and terminated by a `0x00` byte, so a reader on a serial line can resynchronise at the next
//! zero after any lost byte, and a frame damaged by noise is rejected instead of read as a wrong label.
//!
//! Frame layout, for writing a receiver in another language (protocol version 1):
//!
//! 1. payload = the version byte ([`PROTOCOL_VERSION`], `0x01`), then postcard([`Detection`]): `frame`
//!    (varint u64), `label` (varint u16, an index into the bundle's labels), `score` (f32, 4 bytes
//!    little-endian), `latency_us` (varint u32); varints are LEB128;
//! 2. payload += CRC-16/CCITT-FALSE of the payload (poly 0x1021, init 0xFFFF, not reflected, no final xor),
//!    2 bytes little-endian (Python: `binascii.crc_hqx(payload, 0xFFFF)`);
//! 3. frame = COBS(payload) + `0x00`.
//!
//! Compatibility: a sender may append fields after the known ones within a version (readers ignore bytes
//! between the known fields and the CRC); a change that old readers would misread gets a new version. A
//! receiver skips a frame of a version it does not know ([`DetectionError::UnknownVersion`]) and must not act
//! on it: its fields may mean something else.

use serde::{Deserialize, Serialize};

/// One classified frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Detection {
    /// Frame number since the stream started.
    pub frame: u64,
    /// Index into the bundle's labels.
    pub label: u16,
    /// Probability of that label (0..1).
    pub score: f32,
    /// Time from frame capture to result, in microseconds.
    pub latency_us: u32,
}

/// The version of the frame layout this crate writes and reads: the first byte of every payload.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest postcard encoding of a [`Detection`]: varint u64 (10 bytes) + varint u16 (3) + f32 (4) +
/// varint u32 (5).
const MAX_MESSAGE_LEN: usize = 10 + 3 + 4 + 5;
const CRC_LEN: usize = 2;
const MAX_PAYLOAD_LEN: usize = 1 + MAX_MESSAGE_LEN + CRC_LEN;

/// The longest encoded frame, terminating `0x00` included: COBS adds one byte per started 254 bytes of
/// payload, so 25 payload bytes (version, message, CRC) make 26 COBS bytes, plus the terminator. A buffer this long always fits.
pub const MAX_FRAME_LEN: usize = cobs::max_encoding_length(MAX_PAYLOAD_LEN) + 1;

/// Why a detection could not be encoded or a frame could not be read. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DetectionError {
    /// The output buffer cannot hold the frame.
    #[error("detection frame needs {needed} bytes but the buffer has {available}: use a buffer of MAX_FRAME_LEN bytes")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// postcard failed to serialise the message (cannot happen with a correct build).
    #[error("detection could not be serialised ({0}): this is a bug in lookout, please report it")]
    Encode(postcard::Error),
    /// More than [`MAX_FRAME_LEN`] bytes arrived without a `0x00`; the reader skips to the next one.
    #[error(
        "no frame end (0x00) within {limit} bytes: the line carries something other than lookout detections \
         or bytes are lost (check the baud rate); skipping to the next frame"
    )]
    FrameTooLong {
        /// [`MAX_FRAME_LEN`].
        limit: usize,
    },
    /// The frame is not valid COBS.
    #[error("detection frame is not valid COBS: bytes were lost or damaged on the line (check the baud rate and wiring)")]
    BadFraming,
    /// The frame is too short to hold a message and its CRC.
    #[error("detection frame has only {len} bytes after COBS decoding: bytes were lost on the line (check the baud rate)")]
    TooShort {
        /// Decoded length.
        len: usize,
    },
    /// The CRC does not match the message.
    #[error("detection frame CRC mismatch: bytes were damaged on the line (check the baud rate, wiring and ground)")]
    CrcMismatch,
    /// The frame is of a protocol version this reader does not know: it is skipped, never acted on.
    #[error(
        "detection frame of protocol version {version}, this reader knows version {known}: update the firmware \
         or lookout-edge so both speak one version; skipping it"
    )]
    UnknownVersion {
        /// The frame's version byte.
        version: u8,
        /// [`PROTOCOL_VERSION`].
        known: u8,
    },
    /// The CRC matches but the message does not decode: sender and receiver disagree on the format.
    #[error(
        "detection frame does not decode ({0}): the sender uses an incompatible lookout version; \
         update the firmware or lookout-edge"
    )]
    Decode(postcard::Error),
}

impl Detection {
    /// Encodes one frame (payload, CRC, COBS, terminating `0x00`) into `buf`, without allocating, and returns
    /// the part of `buf` written. A buffer of [`MAX_FRAME_LEN`] bytes always fits.
    pub fn encode_into<'a>(&self, buf: &'a mut [u8]) -> Result<&'a mut [u8], DetectionError> {
        let mut payload = [0u8; MAX_PAYLOAD_LEN];
        payload[0] = PROTOCOL_VERSION;
        let message_len = 1 + postcard::to_slice(self, &mut payload[1..=MAX_MESSAGE_LEN])
            .map_err(DetectionError::Encode)?
            .len();
        let crc = crc16_ccitt_false(&payload[..message_len]);
        payload[message_len..message_len + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
        let payload = &payload[..message_len + CRC_LEN];

        let needed = cobs::max_encoding_length(payload.len()) + 1;
        if buf.len() < needed {
            return Err(DetectionError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let encoded_len = cobs::try_encode(payload, &mut buf[..needed - 1]).map_err(|_| {
            DetectionError::BufferTooSmall {
                needed,
                available: buf.len(),
            }
        })?;
        buf[encoded_len] = 0;
        Ok(&mut buf[..encoded_len + 1])
    }

    /// Encodes one frame into a new vector (see [`Detection::encode_into`]).
    pub fn encode(&self) -> alloc::vec::Vec<u8> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        match self.encode_into(&mut buf) {
            Ok(frame) => frame.to_vec(),
            // MAX_FRAME_LEN is the proven maximum and postcard cannot fail on this plain struct.
            Err(error) => unreachable!("a MAX_FRAME_LEN buffer always fits a detection: {error}"),
        }
    }

    /// Decodes one frame, with or without its terminating `0x00`. The bytes are COBS-decoded in place.
    pub fn decode_frame(frame: &mut [u8]) -> Result<Detection, DetectionError> {
        let body = match frame {
            [body @ .., 0] => body,
            body => body,
        };
        if body.is_empty() || body.contains(&0) {
            return Err(DetectionError::BadFraming);
        }
        let report = cobs::decode_in_place_report(body).map_err(|_| DetectionError::BadFraming)?;
        if report.src_used != body.len() {
            return Err(DetectionError::BadFraming);
        }
        let payload = &body[..report.dst_used];
        let Some(message_len) = payload.len().checked_sub(CRC_LEN).filter(|&len| len > 0) else {
            return Err(DetectionError::TooShort { len: payload.len() });
        };
        let (message, crc) = payload.split_at(message_len);
        if crc16_ccitt_false(message).to_le_bytes() != crc {
            return Err(DetectionError::CrcMismatch);
        }
        match message {
            [PROTOCOL_VERSION, fields @ ..] => {
                postcard::from_bytes(fields).map_err(DetectionError::Decode)
            }
            [version, ..] => Err(DetectionError::UnknownVersion {
                version: *version,
                known: PROTOCOL_VERSION,
            }),
            [] => Err(DetectionError::TooShort { len: payload.len() }),
        }
    }
}

/// Reassembles detections from a byte stream (a UART read byte by byte, a pty read in chunks).
///
/// Holds one frame in a fixed buffer, never allocates. After garbage, a lost byte or an over-long run without
/// `0x00`, it reports one error and carries on from the next `0x00`. Empty frames (a `0x00` right after
/// another, e.g. a sender that also starts frames with `0x00`) are skipped silently.
///
/// Not built on postcard's `CobsAccumulator`: after an overflow that one starts a new frame in the middle of
/// the garbage instead of at the next `0x00`, and it has no place for the CRC check.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: [u8; MAX_FRAME_LEN],
    len: usize,
    skipping_to_frame_end: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// A reader waiting for the first frame.
    pub const fn new() -> Self {
        FrameReader {
            buf: [0; MAX_FRAME_LEN],
            len: 0,
            skipping_to_frame_end: false,
        }
    }

    /// Takes one byte; returns a result when it completed a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Detection, DetectionError>> {
        if byte == 0 {
            let frame_len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.skipping_to_frame_end) || frame_len == 0 {
                return None;
            }
            return Some(Detection::decode_frame(&mut self.buf[..frame_len]));
        }
        if self.skipping_to_frame_end {
            return None;
        }
        // The buffer also has room for the terminator, which is never stored.
        if self.len == MAX_FRAME_LEN - 1 {
            self.len = 0;
            self.skipping_to_frame_end = true;
            return Some(Err(DetectionError::FrameTooLong {
                limit: MAX_FRAME_LEN,
            }));
        }
        self.buf[self.len] = byte;
        self.len += 1;
        None
    }

    /// Takes a chunk of bytes and calls `out` once per completed frame, in order.
    pub fn feed(&mut self, bytes: &[u8], mut out: impl FnMut(Result<Detection, DetectionError>)) {
        for &byte in bytes {
            if let Some(result) = self.push(byte) {
                out(result);
            }
        }
    }

    /// Forgets a partly received frame, e.g. after reopening the port.
    pub fn reset(&mut self) {
        self.len = 0;
        self.skipping_to_frame_end = false;
    }
}

/// CRC-16/CCITT-FALSE, bitwise: a frame is at most 24 bytes, so a 512-byte table would buy nothing.
fn crc16_ccitt_false(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_catalogue_check_value() {
        // CRC-16/CCITT-FALSE check value from the CRC catalogue (reveng), also binascii.crc_hqx(b"123456789", 0xFFFF).
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
    }
}

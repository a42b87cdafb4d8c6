//! The detection message on the wire: framing, integrity, and resynchronising a byte stream.

use lookout_shared::detection::{
    Detection, DetectionError, FrameReader, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use proptest::prelude::*;

fn dog(frame: u64) -> Detection {
    Detection {
        frame,
        label: 1,
        score: 0.973,
        latency_us: 41_250,
    }
}

/// Feeds `bytes` in chunks of `chunk` bytes (a UART gives 1, a pty read gives whatever is there).
fn read_all(bytes: &[u8], chunk: usize) -> Vec<Result<Detection, DetectionError>> {
    let mut reader = FrameReader::new();
    let mut results = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        reader.feed(piece, |result| results.push(result));
    }
    results
}

fn detections(results: &[Result<Detection, DetectionError>]) -> Vec<Detection> {
    results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect()
}

#[test]
fn frame_is_cobs_of_postcard_and_crc_then_zero() {
    let detection = dog(7);
    let frame = detection.encode();
    assert_eq!(frame.last(), Some(&0));
    assert!(!frame[..frame.len() - 1].contains(&0));

    // Rebuild the documented layout independently: version, postcard, CRC-16/CCITT-FALSE little-endian, COBS.
    let mut payload = vec![PROTOCOL_VERSION];
    payload.extend(postcard::to_allocvec(&detection).unwrap());
    let crc = crc16_ccitt_false_reference(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut expected = vec![0u8; cobs::max_encoding_length(payload.len())];
    let n = cobs::encode(&payload, &mut expected);
    expected.truncate(n);
    expected.push(0);
    assert_eq!(frame, expected);
}

/// Table-free CRC-16/CCITT-FALSE written from the catalogue definition, independent of the crate's.
fn crc16_ccitt_false_reference(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu32;
    for &byte in bytes {
        for bit in (0..8).rev() {
            let input = u32::from((byte >> bit) & 1);
            let top = (crc >> 15) & 1;
            crc = (crc << 1) & 0xFFFF;
            if top ^ input == 1 {
                crc ^= 0x1021;
            }
        }
    }
    crc as u16
}

#[test]
fn reference_crc_matches_the_catalogue_check_value() {
    assert_eq!(crc16_ccitt_false_reference(b"123456789"), 0x29B1);
}

#[test]
fn largest_detection_fills_max_frame_len_exactly() {
    let largest = Detection {
        frame: u64::MAX,
        label: u16::MAX,
        score: f32::MAX,
        latency_us: u32::MAX,
    };
    assert_eq!(largest.encode().len(), MAX_FRAME_LEN);
    assert_eq!(
        MAX_FRAME_LEN, 27,
        "1 version + 22 message + 2 CRC bytes, COBS + 1, then 0x00"
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    assert_eq!(largest.encode_into(&mut buf).unwrap().len(), MAX_FRAME_LEN);
}

#[test]
fn encode_into_a_small_buffer_is_an_error() {
    let detection = dog(123_456);
    let needed = detection.encode().len();
    for len in 0..needed {
        let mut buf = vec![0u8; len];
        let error = detection.encode_into(&mut buf).unwrap_err();
        assert_eq!(
            error,
            DetectionError::BufferTooSmall {
                needed,
                available: len
            }
        );
    }
    let mut buf = vec![0u8; needed];
    assert_eq!(detection.encode_into(&mut buf).unwrap().len(), needed);
    let message = DetectionError::BufferTooSmall {
        needed,
        available: 3,
    }
    .to_string();
    assert!(message.contains("MAX_FRAME_LEN"), "{message}");
}

#[test]
fn decode_frame_accepts_with_or_without_terminator() {
    let frame = dog(5).encode();
    assert_eq!(Detection::decode_frame(&mut frame.clone()).unwrap(), dog(5));
    let mut without = frame[..frame.len() - 1].to_vec();
    assert_eq!(Detection::decode_frame(&mut without).unwrap(), dog(5));
}

#[test]
fn every_single_damaged_byte_is_rejected() {
    let frame = dog(1_000_000).encode();
    let body_len = frame.len() - 1;
    for at in 0..body_len {
        for mask in 1..=255u8 {
            let mut damaged = frame[..body_len].to_vec();
            damaged[at] ^= mask;
            match Detection::decode_frame(&mut damaged) {
                Err(
                    DetectionError::BadFraming
                    | DetectionError::CrcMismatch
                    | DetectionError::TooShort { .. },
                ) => {}
                other => panic!("byte {at} ^ {mask:#04x}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_lost_byte_is_rejected() {
    let frame = dog(99).encode();
    for at in 0..frame.len() - 1 {
        let mut lost = frame.clone();
        lost.remove(at);
        let results = read_all(&lost, 1);
        assert_eq!(results.len(), 1, "byte {at} lost: {results:?}");
        assert!(results[0].is_err(), "byte {at} lost: {results:?}");
    }
}

#[test]
fn garbage_between_frames_costs_only_the_garbage() {
    let mut stream = Vec::new();
    // Line noise before the first frame, including a stray zero.
    stream.extend_from_slice(&[0x55, 0xAA, 0x00, 0x13, 0x37]);
    stream.push(0);
    stream.extend(dog(1).encode());
    // A boot banner from the other side: text without a zero, longer than a frame.
    stream.extend_from_slice(b"U-Boot 2024.01 (Jan 01 2024) starting kernel ...");
    stream.push(0);
    stream.extend(dog(2).encode());
    // A frame with its last two bytes lost, so it runs into the next frame's bytes.
    let third = dog(3).encode();
    stream.extend_from_slice(&third[..third.len() - 3]);
    stream.extend(dog(4).encode());
    // Idle zeros.
    stream.extend_from_slice(&[0, 0, 0]);
    stream.extend(dog(5).encode());

    for chunk in [1, 2, 3, 7, 64, stream.len()] {
        let results = read_all(&stream, chunk);
        assert_eq!(
            detections(&results),
            [dog(1), dog(2), dog(5)],
            "chunk {chunk}: {results:?}"
        );
        let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        // Noise (1), noise after the stray zero (1), the banner (too long), the merged 3rd+4th frame (1).
        assert!(
            errors.contains(&&DetectionError::FrameTooLong {
                limit: MAX_FRAME_LEN
            }),
            "chunk {chunk}: {errors:?}"
        );
        assert_eq!(errors.len(), 4, "chunk {chunk}: {errors:?}");
    }
}

#[test]
fn reader_resumes_at_the_next_zero_after_an_overlong_run() {
    let mut reader = FrameReader::new();
    let mut results = Vec::new();
    // 200 non-zero bytes that, cut anywhere, could look like frames: a valid frame's body repeated.
    let body = &dog(8).encode()[..];
    let body = &body[..body.len() - 1];
    for _ in 0..20 {
        reader.feed(body, |r| results.push(r));
    }
    assert_eq!(
        results,
        [Err(DetectionError::FrameTooLong {
            limit: MAX_FRAME_LEN
        })],
        "one error for the whole run, no frame started inside it"
    );
    reader.feed(&[0], |r| results.push(r));
    reader.feed(&dog(9).encode(), |r| results.push(r));
    assert_eq!(results.last(), Some(&Ok(dog(9))));
    assert_eq!(results.len(), 2);
}

#[test]
fn push_reports_once_per_frame() {
    let mut reader = FrameReader::new();
    let frame = dog(11).encode();
    let (last, body) = frame.split_last().unwrap();
    for &byte in body {
        assert_eq!(reader.push(byte), None);
    }
    assert_eq!(reader.push(*last), Some(Ok(dog(11))));
    assert_eq!(
        reader.push(0),
        None,
        "an empty frame is idle line, not an error"
    );
}

#[test]
fn reset_drops_a_partial_frame() {
    let mut reader = FrameReader::new();
    let frame = dog(12).encode();
    reader.feed(&frame[..4], |_| panic!("no frame yet"));
    reader.reset();
    let mut results = Vec::new();
    reader.feed(&frame, |r| results.push(r));
    assert_eq!(results, [Ok(dog(12))]);
}

#[test]
fn error_messages_are_one_line_with_a_remedy() {
    let errors = [
        DetectionError::BufferTooSmall {
            needed: 14,
            available: 8,
        },
        DetectionError::Encode(postcard::Error::SerializeBufferFull),
        DetectionError::FrameTooLong {
            limit: MAX_FRAME_LEN,
        },
        DetectionError::BadFraming,
        DetectionError::TooShort { len: 1 },
        DetectionError::CrcMismatch,
        DetectionError::Decode(postcard::Error::DeserializeBadVarint),
    ];
    for error in errors {
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.contains(": "), "what + what to do: {message:?}");
    }
}

#[test]
fn frame_with_valid_crc_but_bad_message_is_a_decode_error() {
    // label varint that never terminates, sealed with a correct CRC: an incompatible sender.
    let mut payload = vec![PROTOCOL_VERSION, 0x05, 0xFF, 0xFF, 0xFF, 0xFF];
    let crc = crc16_ccitt_false_reference(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut frame = vec![0u8; cobs::max_encoding_length(payload.len())];
    let n = cobs::encode(&payload, &mut frame);
    frame.truncate(n);
    let error = Detection::decode_frame(&mut frame).unwrap_err();
    assert!(matches!(error, DetectionError::Decode(_)), "{error:?}");
}

#[test]
fn newer_sender_with_an_appended_field_is_still_read() {
    let mut payload = vec![PROTOCOL_VERSION];
    payload.extend(postcard::to_allocvec(&dog(13)).unwrap());
    payload.extend_from_slice(&[0x03, 0x2a]); // a future field
    let crc = crc16_ccitt_false_reference(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut frame = vec![0u8; cobs::max_encoding_length(payload.len())];
    let n = cobs::encode(&payload, &mut frame);
    frame.truncate(n);
    assert_eq!(Detection::decode_frame(&mut frame).unwrap(), dog(13));
}

#[test]
fn a_frame_of_another_version_is_refused_not_misread() {
    // Version 2 with fields that version 1 would read as a valid detection: a receiver must not act on it.
    let mut payload = vec![PROTOCOL_VERSION + 1];
    payload.extend(postcard::to_allocvec(&dog(21)).unwrap());
    let crc = crc16_ccitt_false_reference(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    let mut frame = vec![0u8; cobs::max_encoding_length(payload.len())];
    let n = cobs::encode(&payload, &mut frame);
    frame.truncate(n);
    let error = Detection::decode_frame(&mut frame).unwrap_err();
    assert_eq!(
        error,
        DetectionError::UnknownVersion {
            version: 2,
            known: 1
        }
    );
    assert!(error.to_string().contains("skipping it"), "{error}");
}

fn arb_detection() -> impl Strategy<Value = Detection> {
    // Any bit pattern for the score, NaN included: the wire must carry it bit for bit.
    (any::<u64>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
        |(frame, label, score_bits, latency_us)| Detection {
            frame,
            label,
            score: f32::from_bits(score_bits),
            latency_us,
        },
    )
}

fn same_bits(a: &Detection, b: &Detection) -> bool {
    a.frame == b.frame
        && a.label == b.label
        && a.score.to_bits() == b.score.to_bits()
        && a.latency_us == b.latency_us
}

proptest! {
    #[test]
    fn any_detection_round_trips(detection in arb_detection()) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let frame = detection.encode_into(&mut buf).unwrap();
        prop_assert!(frame.len() <= MAX_FRAME_LEN);
        prop_assert_eq!(&frame[..], &detection.encode()[..]);
        let decoded = Detection::decode_frame(frame).unwrap();
        prop_assert!(same_bits(&decoded, &detection), "{:?} != {:?}", decoded, detection);
    }

    #[test]
    fn stream_of_frames_with_noise_resynchronises(
        frames in proptest::collection::vec(arb_detection(), 1..20),
        noise in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 20),
        chunk in 1usize..50,
    ) {
        // Noise, then a 0x00 to end it, then a frame: every frame must come through.
        let mut stream = Vec::new();
        for (detection, noise) in frames.iter().zip(&noise) {
            stream.extend_from_slice(noise);
            stream.push(0);
            stream.extend(detection.encode());
        }
        let results = read_all(&stream, chunk);
        // Random noise may, very rarely, itself pass COBS and CRC-16 (odds ~1/65536 per noise run):
        // keep only what matches a sent frame, then every sent frame must be there, in order.
        let kept: Vec<Detection> = detections(&results)
            .into_iter()
            .filter(|d| frames.iter().any(|f| same_bits(f, d)))
            .collect();
        prop_assert_eq!(kept.len(), frames.len(), "{:?}", results);
        prop_assert!(kept.iter().zip(&frames).all(|(a, b)| same_bits(a, b)), "{:?}", results);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut copy = bytes.clone();
        let _ = Detection::decode_frame(&mut copy);
        let _ = read_all(&bytes, 3);
    }
}

//! Arbitrary bytes through the detection frame reader, in arbitrary chunk sizes: no panic, and every
//! detection it yields survives an encode/decode round trip bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_shared::detection::{Detection, FrameReader};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut reader = FrameReader::new();
    for piece in stream.chunks(usize::from(chunk).max(1)) {
        reader.feed(piece, |result| {
            if let Ok(detection) = result {
                check_round_trip(&detection);
            }
        });
    }
    let mut frame = stream.to_vec();
    if let Ok(detection) = Detection::decode_frame(&mut frame) {
        check_round_trip(&detection);
    }
});

fn check_round_trip(detection: &Detection) {
    let mut frame = detection.encode();
    let again = Detection::decode_frame(&mut frame).expect("an encoded frame decodes");
    assert_eq!(detection.frame, again.frame);
    assert_eq!(detection.label, again.label);
    assert_eq!(detection.score.to_bits(), again.score.to_bits());
    assert_eq!(detection.latency_us, again.latency_us);
}

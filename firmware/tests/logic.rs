//! The firmware's logic on the host: rules, holds and silence on real frames (encoded by the same
//! `lookout-shared` code `lookout-edge watch --serial` uses), and properties over any byte stream.

use lookout_firmware::{Controller, Detection, DetectionError, Event, Ignored, Rule};
use proptest::prelude::*;

/// Cat (label 0) drives output 0, dog (label 1) output 1 only when sure; label 2 has no rule.
const RULES: [Rule; 2] = [
    Rule {
        label: 0,
        output: 0,
        min_score: 0.5,
        hold_ms: 1_000,
    },
    Rule {
        label: 1,
        output: 1,
        min_score: 0.8,
        hold_ms: 2_000,
    },
];
const SILENCE_MS: u32 = 5_000;

fn detection(frame: u64, label: u16, score: f32) -> Detection {
    Detection {
        frame,
        label,
        score,
        latency_us: 40_000,
    }
}

fn feed(controller: &mut Controller<'_, 2>, bytes: &[u8], now: u64) -> Vec<Event> {
    let mut events = Vec::new();
    controller.feed(bytes, now, |e| events.push(e));
    events
}

fn tick(controller: &mut Controller<'_, 2>, now: u64) -> Vec<Event> {
    let mut events = Vec::new();
    controller.tick(now, |e| events.push(e));
    events
}

#[test]
fn a_detection_switches_its_output_for_the_hold_and_a_new_one_renews_it() {
    let mut c = Controller::<2>::new(&RULES, SILENCE_MS);
    let events = feed(&mut c, &detection(7, 0, 0.9).encode(), 100);
    assert_eq!(
        events,
        [
            Event::Received(detection(7, 0, 0.9)),
            Event::On {
                output: 0,
                label: 0,
                frame: 7,
                renewed: false
            }
        ]
    );
    assert_eq!(c.outputs(), [true, false]);
    assert_eq!(tick(&mut c, 1_099), []);
    // Renewed at 900: on until 1900.
    let events = feed(&mut c, &detection(9, 0, 0.6).encode(), 900);
    assert!(events.contains(&Event::On {
        output: 0,
        label: 0,
        frame: 9,
        renewed: true
    }));
    assert_eq!(tick(&mut c, 1_899), []);
    assert_eq!(tick(&mut c, 1_900), [Event::Off { output: 0 }]);
    assert_eq!(c.outputs(), [false, false]);
}

#[test]
fn what_no_rule_accepts_is_reported_and_switches_nothing() {
    let mut c = Controller::<2>::new(&RULES, SILENCE_MS);
    for (d, why) in [
        (detection(1, 1, 0.7), Ignored::BelowMinimum),
        (detection(2, 2, 0.99), Ignored::UnknownLabel),
        (detection(3, 0, f32::NAN), Ignored::BadScore),
        (detection(4, 0, 1.5), Ignored::BadScore),
        (detection(5, 0, -0.1), Ignored::BadScore),
    ] {
        let events = feed(&mut c, &d.encode(), 10);
        let ignored = events.iter().any(|e| {
            matches!(e, Event::Ignored { detection, why: w } if detection.frame == d.frame && *w == why)
        });
        assert!(ignored, "{d:?}: {events:?}");
        assert_eq!(c.outputs(), [false, false]);
    }
}

#[test]
fn silence_turns_every_output_off_once_and_a_frame_resumes() {
    let mut c = Controller::<2>::new(
        &[Rule {
            hold_ms: 60_000,
            ..RULES[0]
        }],
        SILENCE_MS,
    );
    feed(&mut c, &detection(1, 0, 0.9).encode(), 1_000);
    assert_eq!(c.outputs(), [true, false]);
    assert_eq!(tick(&mut c, 5_999), []);
    assert_eq!(
        tick(&mut c, 6_000),
        [Event::Off { output: 0 }, Event::Silent { since_ms: 5_000 }]
    );
    assert_eq!(c.outputs(), [false, false]);
    assert_eq!(tick(&mut c, 9_000), [], "silence is said once");
    let events = feed(&mut c, &detection(2, 0, 0.9).encode(), 9_500);
    assert_eq!(events[1], Event::Resumed);
    assert_eq!(c.outputs(), [true, false]);
}

#[test]
fn bad_bytes_between_frames_are_reported_and_the_next_frame_still_acts() {
    let mut c = Controller::<2>::new(&RULES, SILENCE_MS);
    let mut bytes = vec![0x13, 0x37, 0xff, 0x00];
    let mut damaged = detection(1, 0, 0.9).encode();
    damaged[3] ^= 0x40;
    bytes.extend(damaged);
    bytes.extend(detection(2, 1, 0.95).encode());
    let events = feed(&mut c, &bytes, 0);
    let bad = events
        .iter()
        .filter(|e| matches!(e, Event::BadFrame(_)))
        .count();
    assert_eq!(bad, 2, "{events:?}");
    assert_eq!(c.outputs(), [false, true]);
}

#[test]
fn every_truncation_of_a_valid_frame_acts_on_nothing() {
    // Deterministic detections (a fixed LCG): the same cases at every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state
    };
    for _ in 0..500 {
        let d = detection(next(), (next() % 3) as u16, (next() % 1000) as f32 / 999.0);
        let frame = d.encode();
        for cut in 0..frame.len() - 1 {
            let mut c = Controller::<2>::new(&RULES, SILENCE_MS);
            // The line lost the rest: the next 0x00 ends what arrived.
            let mut bytes = frame[..cut].to_vec();
            bytes.push(0);
            let events = feed(&mut c, &bytes, 0);
            assert!(
                events.iter().all(|e| matches!(e, Event::BadFrame(_))),
                "{d:?} cut at {cut}: {events:?}"
            );
            assert_eq!(c.outputs(), [false, false]);
            // And the reader is ready for the next whole frame.
            let events = feed(&mut c, &detection(1, 0, 0.9).encode(), 1);
            assert_eq!(events[0], Event::Received(detection(1, 0, 0.9)));
        }
    }
}

#[test]
fn a_frame_of_an_unknown_protocol_version_is_skipped() {
    let mut frame = detection(4, 0, 0.9).encode();
    // Rewrite the version byte (COBS keeps non-zero bytes in place after the first code byte) and its CRC.
    let mut payload = frame.clone();
    let n = cobs::decode_in_place(&mut payload[..frame.len() - 1]).expect("valid COBS");
    payload.truncate(n);
    payload[0] = 2;
    let crc = crc16(&payload[..n - 2]);
    payload[n - 2..].copy_from_slice(&crc.to_le_bytes());
    frame = vec![0; cobs::max_encoding_length(n) + 1];
    let len = cobs::encode(&payload, &mut frame);
    frame.truncate(len);
    frame.push(0);
    let mut c = Controller::<2>::new(&RULES, SILENCE_MS);
    let events = feed(&mut c, &frame, 0);
    assert_eq!(
        events,
        [Event::BadFrame(DetectionError::UnknownVersion {
            version: 2,
            known: 1
        })]
    );
    assert_eq!(c.outputs(), [false, false]);
}

/// CRC-16/CCITT-FALSE, as the protocol documents it.
fn crc16(bytes: &[u8]) -> u16 {
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

/// What the outputs must be after `events`, computed from the frames received alone: the reference the
/// controller is held to.
fn expected_outputs(events: &[Event]) -> [bool; 2] {
    let mut on = [false; 2];
    for event in events {
        if let Event::Received(d) = event {
            for rule in RULES.iter().filter(|r| r.label == d.label) {
                if (0.0..=1.0).contains(&d.score) && d.score >= rule.min_score {
                    on[rule.output] = true;
                }
            }
        }
    }
    on
}

fn arb_detection() -> impl Strategy<Value = Detection> {
    (any::<u64>(), 0u16..4, any::<u32>()).prop_map(|(frame, label, bits)| {
        // Half the time a probability, otherwise any bit pattern (NaN, negative, huge).
        let score = if bits % 2 == 0 {
            (bits % 1001) as f32 / 1000.0
        } else {
            f32::from_bits(bits)
        };
        detection(frame, label, score)
    })
}

/// A line: valid frames, garbage, and frames cut short, in any order.
fn arb_line() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        arb_detection().prop_map(|d| d.encode()),
        proptest::collection::vec(any::<u8>(), 0..40),
        (arb_detection(), any::<prop::sample::Index>()).prop_map(|(d, cut)| {
            let frame = d.encode();
            frame[..cut.index(frame.len())].to_vec()
        }),
    ];
    proptest::collection::vec(piece, 0..20).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes, read in any chunks: no panic, and an output is on exactly when a frame that was received
    /// (whole, checked) satisfies its rule; nothing else switches anything.
    #[test]
    fn any_line_in_any_chunks_switches_only_what_received_frames_ask(
        line in arb_line(),
        chunk in 1usize..64,
    ) {
        let mut c = Controller::<2>::new(&RULES, SILENCE_MS);
        let mut events = Vec::new();
        for piece in line.chunks(chunk) {
            c.feed(piece, 0, |e| events.push(e));
        }
        prop_assert_eq!(c.outputs(), expected_outputs(&events));
        for (i, event) in events.iter().enumerate() {
            if let Event::On { label, frame, .. } = event {
                // Each switch follows the frame that asked for it.
                let asked = events[..i].iter().rev().find_map(|e| match e {
                    Event::Received(d) => Some(d),
                    _ => None,
                });
                prop_assert!(asked.is_some_and(|d| d.label == *label && d.frame == *frame));
            }
        }
        // Holds run out and silence comes: everything off.
        c.tick(u64::from(SILENCE_MS) + 60_000, |_| {});
        prop_assert_eq!(c.outputs(), [false, false]);
    }
}

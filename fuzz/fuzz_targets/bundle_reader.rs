//! Arbitrary bytes through the bundle reader: no panic, no huge allocation, and whatever reads back
//! re-encodes to something that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_shared::bundle::Bundle;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    check(data);
    // The fuzzer cannot forge SHA-256, so without this the header decoder would never see its input:
    // also try the same bytes with a valid checksum appended.
    let mut sealed = data.to_vec();
    let checksum = Sha256::digest(data);
    sealed.extend_from_slice(&checksum);
    check(&sealed);
});

fn check(bytes: &[u8]) {
    let peeked = Bundle::peek_header(bytes);
    let Ok(bundle) = Bundle::from_bytes(bytes) else {
        assert!(
            peeked.is_err(),
            "peek_header accepted what from_bytes refused"
        );
        return;
    };
    assert!(
        peeked.is_ok(),
        "from_bytes accepted what peek_header refused"
    );
    // postcard accepts non-canonical varints and NaN != NaN, so compare re-encodings, not values.
    let once = bundle
        .to_bytes()
        .expect("a bundle that was read can be written");
    let twice = Bundle::from_bytes(&once)
        .expect("a written bundle reads back")
        .to_bytes()
        .expect("and writes again");
    assert_eq!(once, twice);
}

//! Writes the still-scene video with two visits that `tests/tests/motion.rs` uses, for `benches/motion.sh`.
//!
//!     cargo run -p lookout-e2e --example motion_video -- DIR

fn main() {
    let dir = std::env::args().nth(1).expect("usage: motion_video DIR");
    let shared =
        lookout_e2e::shared_dir().expect("the shared test data (../shared or LOOKOUT_TEST_DATA)");
    let visits = lookout_e2e::scene::still_with_visits(&shared, std::path::Path::new(&dir));
    println!(
        "{} frames, {} of them visits",
        visits.len(),
        visits.iter().filter(|v| **v).count()
    );
}

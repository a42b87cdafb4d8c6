//! Writes the fixed-camera scene test (`lookout_e2e::scene`) to a folder, as a user's camera would have left it,
//! and the photo folder to fit on (the cats-vs-dogs set without the cats that visit the scene):
//!
//! ```text
//! cargo run --release -p lookout-e2e --example camera_scene -- OUT
//! OUT/PetImages/{Cat,Dog}      the shared photos, less the visiting cats
//! OUT/day1/cat/                6 frames of the first visits (what a user sorts on day one)
//! OUT/day1/empty/              20 frames of the first evening's empty scene
//! OUT/day1-bowl/{cat,empty}/   the same frames' bowl zone, as `watch --zone bowl=… --capture` saves them
//! OUT/later/{cat,empty,visitor}/  the test: 20 later visits, 40 later empty frames, 12 other animals
//! ```
//!
//! `benches/camera_scene.sh` fits on it and measures; `tests/tests/camera_scene.rs` runs the same workflow small.

use std::path::PathBuf;

use lookout_e2e::scene::{scene, visitor_photos, write_frames, write_zone_crops};

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| {
        eprintln!("usage: camera_scene OUT_DIR");
        std::process::exit(2)
    }));
    let Some(shared) = lookout_e2e::shared_dir() else {
        eprintln!(
            "the shared test data was not found: put it in ../shared or set LOOKOUT_TEST_DATA"
        );
        std::process::exit(2)
    };
    let cats = lookout_e2e::photos(&shared, "Cat");
    let dogs = lookout_e2e::photos(&shared, "Dog");
    // The last 26 cats visit the porch; they are kept out of the photos the head is fitted on.
    let (fit_cats, visiting) = cats.split_at(cats.len() - 26);
    lookout_e2e::copy_into(&out.join("PetImages/Cat"), fit_cats);
    lookout_e2e::copy_into(&out.join("PetImages/Dog"), &dogs);
    let porch = scene(&shared);
    let day1_cats = write_frames(
        &out.join("day1/cat"),
        "day1",
        &porch,
        &visiting[..6],
        "cat",
        6,
        1,
    );
    let day1_empty = write_frames(
        &out.join("day1/empty"),
        "day1",
        &porch,
        &[],
        "empty",
        20,
        100,
    );
    write_zone_crops(&day1_cats, &out.join("day1-bowl/cat"));
    write_zone_crops(&day1_empty, &out.join("day1-bowl/empty"));
    write_frames(
        &out.join("later/cat"),
        "later",
        &porch,
        &visiting[6..],
        "cat",
        20,
        200,
    );
    write_frames(
        &out.join("later/empty"),
        "later",
        &porch,
        &[],
        "empty",
        40,
        300,
    );
    write_frames(
        &out.join("later/visitor"),
        "later",
        &porch,
        &visitor_photos(&shared),
        "visitor",
        12,
        400,
    );
    println!("{}", out.display());
}

//! Writes the fixed-camera scene test (`lookout_e2e::scene`) to a folder, as a user's camera would have left it,
//! and the photo folder to fit on (the cats-vs-dogs set without the cats that visit the scene):
//!
//! ```text
//! cargo run --release -p lookout-e2e --example camera_scene -- OUT [--infrared]
//! OUT/PetImages/{Cat,Dog}      the shared photos, less the visiting cats
//! OUT/day1/cat/                6 frames of the first visits (what a user sorts on day one)
//! OUT/day1/empty/              20 frames of the first evening's empty scene
//! OUT/day1-bowl/{cat,empty}/   the same frames' bowl zone, as `watch --zone bowl=… --capture` saves them
//! OUT/later/{cat,empty,visitor}/  the test: 20 later visits, 40 later empty frames, 12 other animals
//! OUT/week2-bowl/visitor/      6 bowl crops of the three other animals the day-one bundle calls Cat (weasel,
//!                              Angora rabbit, giant panda), mirrored, at other light and noise: what `watch
//!                              --capture-when event` saved when they were called Cat, for the user to sort
//! OUT/week2-bowl/cat/          6 bowl crops of the day-one cats come back (mirrored, other light): the events
//!                              of the same week that were right
//! ```
//!
//! `--infrared`: the camera's night mode, monochrome frames (`NightMode::Infrared`).
//! `benches/camera_scene.sh` fits on it and measures; `tests/tests/camera_scene.rs` runs the same workflow small.

use std::path::PathBuf;

use lookout_e2e::scene::{scene, visitor_photos, write_frames, write_zone_crops, NightMode};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let night = if args.iter().any(|a| a == "--infrared") {
        NightMode::Infrared
    } else {
        NightMode::Colour
    };
    let Some(out) = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
    else {
        eprintln!("usage: camera_scene OUT_DIR [--infrared]");
        std::process::exit(2)
    };
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
        night,
        "day1",
        &porch,
        &visiting[..6],
        "cat",
        6,
        1,
    );
    let day1_empty = write_frames(
        &out.join("day1/empty"),
        night,
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
        night,
        "later",
        &porch,
        &visiting[6..],
        "cat",
        20,
        200,
    );
    write_frames(
        &out.join("later/empty"),
        night,
        "later",
        &porch,
        &[],
        "empty",
        40,
        300,
    );
    write_frames(
        &out.join("later/visitor"),
        night,
        "later",
        &porch,
        &visitor_photos(&shared),
        "visitor",
        12,
        400,
    );
    // Week two: the three animals the day-one bundle calls Cat came by, and the day-one cats came back. Their
    // frames are mirrored (another visit, not the same frames again) and written at other lights and noise;
    // the other three animals stay unseen. (benches/camera_scene.sh counts the sorted ones by this choice: the
    // odd later visitor frames.)
    let mirrored = out.join("week2-photos");
    std::fs::create_dir_all(&mirrored).expect("week-two photos folder");
    let mirror = |photo: &PathBuf| {
        let path = mirrored.join(photo.file_name().expect("file name"));
        image::open(photo)
            .expect("a photo")
            .fliph()
            .save(&path)
            .expect("writing a mirrored photo");
        path
    };
    let seen: Vec<PathBuf> = visitor_photos(&shared)
        .iter()
        .skip(1)
        .step_by(2)
        .map(mirror)
        .collect();
    let cats_again: Vec<PathBuf> = visiting[..6].iter().map(mirror).collect();
    let week2_cats = write_frames(
        &out.join("week2/cat"),
        night,
        "week2",
        &porch,
        &cats_again,
        "cat",
        6,
        600,
    );
    write_zone_crops(&week2_cats, &out.join("week2-bowl/cat"));
    let week2 = write_frames(
        &out.join("week2/visitor"),
        night,
        "week2",
        &porch,
        &seen,
        "visitor",
        6,
        500,
    );
    write_zone_crops(&week2, &out.join("week2-bowl/visitor"));
    println!("{}", out.display());
}
